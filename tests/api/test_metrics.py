"""`/metrics` on an in-process coordinator: who may read it, and that what happens is
counted there (requests by route template, a job's queue wait and push → start, its
end, the run's end, the queue's depth) under the names docs/metrics.md gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from conveyor.coordinator.app import create_app
from conveyor.coordinator.config import ServerConfig
from tests.api.conftest import ADMIN, World, git_repo
from tests.helpers import wait_until

SCRAPE = "scrape-token-for-tests"


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[World]:
    """One team `a` with a project, gauges refreshed every 50 ms, and a scrape token."""
    config = ServerConfig(
        data_dir=tmp_path / "server",
        admin_token=ADMIN,
        long_poll_s=0.5,
        metrics_token=SCRAPE,
        metrics_every_s=0.05,
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(config)) as client:
        assert client.post("/api/v1/teams", json={"name": "a"}, headers=admin).status_code == 201
        tokens = {"admin": ADMIN}
        for role in ("viewer", "developer"):
            made = client.post(
                "/api/v1/teams/a/tokens", json={"name": role, "role": role}, headers=admin
            )
            tokens[f"a:{role}"] = made.json()["token"]
        repo = git_repo(tmp_path / "repo", "a")
        body = {"team": "a", "name": "api", "repo_url": f"file://{repo}"}
        assert client.post("/api/v1/projects", json=body, headers=admin).status_code == 201
        yield World(client, tokens, {"a": repo})


def scrape(world: World, token: str = SCRAPE) -> str:
    answer = world.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def test_only_the_scrape_token_or_an_admin_reads_metrics(watched: World):
    assert watched.client.get("/metrics").status_code == 401
    assert watched.call("a:viewer", "GET", "/metrics").status_code == 403
    assert "conveyor_db_statements_total" in scrape(watched)
    assert "conveyor_db_statements_total" in scrape(watched, ADMIN)


def test_requests_are_timed_by_route_template_never_by_value(watched: World):
    before = scrape(watched)
    for _ in range(3):
        assert watched.call("a:viewer", "GET", "/api/v1/projects/a/api").status_code == 200
    watched.call("a:viewer", "GET", "/no/such/thing")
    after = scrape(watched)
    route = "/api/v1/projects/{team}/{project}"
    name = "conveyor_http_request_duration_seconds_count"
    counted = value(after, name, route=route, status="200") - value(
        before, name, route=route, status="200"
    )
    assert counted == 3
    assert value(after, name, route="unmatched", status="404") >= 1
    assert 'route="/api/v1/projects/a/api"' not in after


def test_a_run_is_counted_from_its_queue_to_its_end(watched: World):
    reg = watched.call("admin", "POST", "/api/v1/runner-tokens", json={}).json()["token"]
    runner = watched.client.post(
        "/api/v1/runners/register", json={"token": reg, "name": "r1"}
    ).json()["token"]
    headers = {"Authorization": f"Bearer {runner}"}
    before = scrape(watched)  # counters are per process: other tests' counts are in it
    made = watched.call("a:developer", "POST", "/api/v1/projects/a/api/runs", json={"ref": "main"})
    assert made.status_code == 201

    def queued() -> bool:
        return value(scrape(watched), "conveyor_jobs", team="a", status="pending") == 1

    wait_until(queued, 10, "the queue's depth")
    for expected in ("build", "test"):
        job = watched.client.post(
            "/api/v1/runners/jobs/request", params={"wait": 0}, headers=headers
        ).json()
        assert job["spec"]["name"] == expected
        finished = watched.client.post(
            f"/api/v1/runners/jobs/{job['job_id']}/finish",
            json={"fence": job["fence"], "status": "success", "exit_code": 0},
            headers=headers,
        )
        assert finished.json() == {"status": "success"}
    text = scrape(watched)

    def grew(name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(before, name, **labels)

    assert grew("conveyor_jobs_finished_total", team="a", status="success") == 2
    assert grew("conveyor_job_queue_wait_seconds_count", team="a") == 2
    assert grew("conveyor_push_to_start_seconds_count", team="a") == 1  # build only
    assert grew("conveyor_job_duration_seconds_count", team="a", status="success") == 2
    assert value(text, "conveyor_runners_online", team="") == 1  # a shared runner
    runs = ("conveyor_runs_finished_total",)
    labels = {"team": "a", "project": "api", "status": "success"}

    def run_counted() -> bool:
        return value(scrape(watched), *runs, **labels) - value(before, *runs, **labels) == 1

    wait_until(run_counted, 10, "the run's end")
    assert value(scrape(watched), "conveyor_jobs", team="a") == 0


def test_deployments_waiting_for_approvals_are_counted(
    stops_deploys: None, watched: World, haproxy_required: None
):
    from tests.api.test_deployments import tarball, upload
    from tests.api.test_policy import SERVICE

    digest = upload(watched, tarball({"conveyor.yml": SERVICE}))
    made = watched.call(
        "a:developer",
        "POST",
        "/api/v1/projects/a/api/deployments",
        json={"environment": "production", "artifact": digest},
    )
    assert made.status_code == 201 and made.json()["awaiting_approval"], made.text

    def counted() -> bool:
        return value(scrape(watched), "conveyor_approvals_waiting", team="a") == 1

    wait_until(counted, 10, "the deployment waiting for approval to be counted")
    rejected = watched.call(
        "admin", "POST", f"/api/v1/deployments/{made.json()['id']}/reject", json={}
    )
    assert rejected.status_code == 200, rejected.text
    wait_until(
        lambda: value(scrape(watched), "conveyor_approvals_waiting", team="a") == 0,
        10,
        "the rejected deployment to leave the count",
    )
