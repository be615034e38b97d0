"""`GET /api/v1/teams/{team}/dora` and a project's production environments: who may
read and change them, and what a bad window gets. The figures themselves are tested on
a seeded history (tests/storage/test_dora.py) and on real deploys
(tests/deploy/test_pipeline_deploy.py)."""

from __future__ import annotations

from tests.api.conftest import World


def test_a_team_with_no_production_deploy_has_no_figures_yet(world: World):
    found = world.call("a:viewer", "GET", "/api/v1/teams/a/dora")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["team"] == "a" and body["window_days"] == 30 and body["services"] == {}
    overall = body["overall"]
    assert overall["deployments"] == 0 and overall["deploys_per_day"] == 0
    assert overall["lead_time_seconds"] is None and overall["change_failure_rate"] is None
    assert overall["bands"]["deployment_frequency"] == "low" and overall["band"] == "low"
    week = world.call("a:viewer", "GET", "/api/v1/teams/a/dora", params={"window": "7d"})
    assert week.json()["window_days"] == 7


def test_other_teams_and_bad_windows_are_refused(world: World):
    assert world.call("b:owner", "GET", "/api/v1/teams/a/dora").status_code == 404
    assert world.call("admin", "GET", "/api/v1/teams/a/dora").status_code == 200
    for window, message in (
        ("5m", "between 1h and 366d"),
        ("400d", "between 1h and 366d"),
        ("soon", "window: "),
    ):
        refused = world.call("a:viewer", "GET", "/api/v1/teams/a/dora", params={"window": window})
        assert refused.status_code == 422 and message in refused.json()["detail"], refused.text


def test_a_maintainer_names_the_production_environments(world: World):
    path = "/api/v1/projects/a/api"
    assert world.call("a:viewer", "GET", path).json()["production"] == ["production", "prod"]
    denied = world.call("a:developer", "PATCH", path, json={"production": ["live"]})
    assert denied.status_code == 403
    changed = world.call("a:maintainer", "PATCH", path, json={"production": ["live", "eu-live"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["production"] == ["live", "eu-live"]
    # Only the fields given change.
    assert changed.json()["artifact_retention_days"] == 30
    kept = world.call("a:maintainer", "PATCH", path, json={"artifact_retention_days": 9})
    assert kept.json()["production"] == ["live", "eu-live"]
    for body in ({}, {"production": []}, {"production": ["no spaces"]}, {"prod": ["x"]}):
        refused = world.call("a:maintainer", "PATCH", path, json=body)
        assert refused.status_code == 422, (body, refused.text)
    assert world.call("a:viewer", "GET", path).json()["production"] == ["live", "eu-live"]
