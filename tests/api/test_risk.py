"""`GET …/environments/{env}/risk?artifact=…`: the score of a deploy before anyone makes
it, from the artifact's own conveyor.yml (its `risk.sensitive_paths`, its
`runtime.pre_deploy`), for an environment not deployed to yet."""

from __future__ import annotations

from tests.api.conftest import World
from tests.api.test_deployments import BASE, tarball, upload

SERVICE = """\
version: 1
service: api
team: a
jobs:
  build: {script: "true"}
runtime:
  command: serve --port $PORT
  pre_deploy: ["python manage.py migrate --noinput"]
risk:
  sensitive_paths: ["migrations/**"]
"""


def test_the_risk_of_a_first_deploy_factor_by_factor(world: World):
    digest = upload(world, tarball({"conveyor.yml": SERVICE, "app.py": "print()"}))
    answer = world.call(
        "a:viewer", "GET", f"{BASE}/environments/production/risk", params={"artifact": digest}
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert (data["environment"], data["artifact"]) == ("production", digest)
    factors = {f["name"]: f for f in data["factors"]}
    assert list(factors) == [
        "change size",
        "sensitive paths",
        "coverage",
        "allowed failures",
        "recent failures",
        "timing",
        "migrations",
    ]
    assert factors["change size"]["value"] == "unknown (no deployed revision to compare)"
    assert factors["change size"]["contribution"] == 10.0
    assert factors["migrations"] == {
        "name": "migrations",
        "value": "pre_deploy runs migrations",
        "weight": 10,
        "contribution": 10.0,
    }
    assert factors["recent failures"]["value"] == "no deployments yet"
    assert factors["sensitive paths"]["contribution"] == 0.0
    # The timing factor depends on when the test runs; the score is the sum either way.
    assert data["score"] == round(sum(f["contribution"] for f in data["factors"]))
    assert data["score"] >= 20 and data["at"].endswith("+00:00")


def test_risk_needs_a_known_artifact_and_a_member_of_the_team(world: World):
    digest = upload(world, tarball({"conveyor.yml": SERVICE}))
    path = f"{BASE}/environments/production/risk"
    missing = world.call("a:viewer", "GET", path, params={"artifact": "sha256:" + "0" * 64})
    assert missing.status_code == 404 and "no artifact" in missing.json()["detail"]
    malformed = world.call("a:viewer", "GET", path, params={"artifact": "v1"})
    assert malformed.status_code == 422
    assert world.call("a:viewer", "GET", path).status_code == 422
    other = world.call("b:owner", "GET", path, params={"artifact": digest})
    assert other.status_code == 404
    plain = upload(world, b"not a tarball")
    refused = world.call("a:viewer", "GET", path, params={"artifact": plain})
    assert refused.status_code == 422 and "not a tarball" in refused.json()["detail"]


def test_risk_is_timed_on_the_environments_clock_and_weighs_its_freezes(world: World):
    digest = upload(world, tarball({"conveyor.yml": SERVICE}))
    protection = f"{BASE}/environments/production/protection"
    assert (
        world.call("a:maintainer", "PUT", protection, json={"timezone": "Asia/Tokyo"}).status_code
        == 200
    )
    freeze = {"cron": "* * * * *", "duration": "2m", "environment": "production"}
    assert world.call("a:maintainer", "POST", f"{BASE}/freezes", json=freeze).status_code == 201
    data = world.call(
        "a:viewer", "GET", f"{BASE}/environments/production/risk", params={"artifact": digest}
    ).json()
    assert data["at"].endswith("+09:00")
    timing = next(f for f in data["factors"] if f["name"] == "timing")
    assert "0 h before a freeze" in timing["value"] and timing["contribution"] == 15.0
