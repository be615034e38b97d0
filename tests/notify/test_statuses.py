"""Commit statuses reach each provider in its documented request format, through the
outbox, retried after a failure: a local HTTP server records the requests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conveyor.coordinator.app import create_app
from conveyor.coordinator.config import ServerConfig
from conveyor.storage.tables import StatusReport
from tests.helpers import wait_until
from tests.intake.conftest import ADMIN, commit, git

PIPELINE = """\
version: 1
service: api
team: a
jobs:
  build: {script: "true", required_for_merge: true}
  lint: {script: "true"}
"""


class Recorder(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 1  # the first request gets a 502: the outbox must retry it


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.fail_next > 0:
            self.server.fail_next -= 1
            self.send_response(502)
            self.end_headers()
            return
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
        )
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _repo(tmp_path: Path, pipeline: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {"conveyor.yml": pipeline})
    return repo


def _config(tmp_path: Path) -> ServerConfig:
    """A coordinator that reconciles and sends statuses every 50 ms."""
    return ServerConfig(
        data_dir=tmp_path / "server",
        admin_token=ADMIN,
        status_poll_s=0.05,
        status_backoff_s=0.05,
        public_url="https://ci.example.com",
    )


def _wait(check: Any, what: str, timeout: float = 20.0) -> Any:
    return wait_until(check, timeout, what, every=0.05)


def test_statuses_per_provider(tmp_path: Path, recorder: Recorder) -> None:
    repo = _repo(tmp_path, PIPELINE)
    sha = git(repo, "rev-parse", "HEAD")
    api = f"http://127.0.0.1:{recorder.server_address[1]}"
    config = _config(tmp_path)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(config)) as client:
        client.post("/api/v1/teams", json={"name": "a"}, headers=admin).raise_for_status()
        # Project name → its API prefix; the name is the provider's, except Bitbucket Data
        # Center, a `bitbucket` project whose API is the server's /rest/api/latest.
        prefixes = {
            "github": "/gh",
            "gitlab": "/gl/api/v4",
            "gitea": "/gt/api/v1",
            "bitbucket": "/bb/2.0",
            "bitbucket-dc": "/bbdc/rest/api/latest",
        }
        for provider, prefix in prefixes.items():
            body = {
                "team": "a",
                "name": provider,
                "repo_url": str(repo),
                "provider": provider.removesuffix("-dc"),
                "status": {
                    "api_url": api + prefix,
                    "repository": "acme/api",
                    "token": f"tok-{provider}",
                },
            }
            created = client.post("/api/v1/projects", json=body, headers=admin)
            assert created.status_code == 201 and created.json()["statuses_to"] == api + prefix
            run = client.post(
                f"/api/v1/projects/a/{provider}/runs", json={"ref": "main"}, headers=admin
            )
            assert run.status_code == 201
        # Every run reports `pending` for itself and for its required check.
        _wait(lambda: len(recorder.requests) >= 2 * len(prefixes), "the pending statuses")
        reg = client.post("/api/v1/runner-tokens", json={}, headers=admin).json()["token"]
        runner = client.post("/api/v1/runners/register", json={"token": reg, "name": "r"}).json()
        headers = {"Authorization": f"Bearer {runner['token']}"}
        for _ in range(2 * len(prefixes)):
            job = client.post("/api/v1/runners/jobs/request", params={"wait": 0}, headers=headers)
            assert job.status_code == 200, job.text
            claimed = job.json()
            finished = client.post(
                f"/api/v1/runners/jobs/{claimed['job_id']}/finish",
                json={"fence": claimed["fence"], "status": "success", "exit_code": 0},
                headers=headers,
            )
            assert finished.status_code == 200
        _wait(
            lambda: sum(1 for r in recorder.requests if _is_success(r)) >= 2 * len(prefixes),
            "the success statuses",
        )
        state = client.app.state.coordinator

        async def attempts() -> list[int] | None:
            """Every report's attempts, once none is left to send (a run may queue a
            `running` report after its pending one while the successes arrive)."""
            async with state.db.transaction() as session:
                rows = (
                    await session.execute(select(StatusReport.attempts, StatusReport.sent_at))
                ).all()
            return None if any(sent is None for _, sent in rows) else [n for n, _ in rows]

        tries = _wait(lambda: client.portal.call(attempts), "every report to be sent")
    # The 502 was retried: one report took two attempts, the others one.
    assert sorted(tries) == [1] * (len(tries) - 1) + [2]
    by_provider: dict[str, list[dict[str, Any]]] = {p: [] for p in prefixes}
    for request in recorder.requests:
        provider = next(p for p, prefix in prefixes.items() if request["path"].startswith(prefix))
        by_provider[provider].append(request)
    for provider, requests in by_provider.items():
        contexts = {_context(provider, r) for r in requests}
        assert contexts == {f"conveyor/a/{provider}", "conveyor/a/required"}, provider
        for request in requests:
            _check_format(provider, prefixes[provider], sha, request)
        for context in contexts:
            states = [_state(provider, r) for r in requests if _context(provider, r) == context]
            assert states[0] in {"pending", "INPROGRESS"} and _success(provider, states[-1])


def _context(provider: str, request: dict[str, Any]) -> str:
    body = request["json"]
    return str(body["name"] if provider.startswith(("gitlab", "bitbucket")) else body["context"])


def _state(provider: str, request: dict[str, Any]) -> str:
    return str(request["json"]["state"])


def _success(provider: str, state: str) -> bool:
    return state == ("SUCCESSFUL" if provider.startswith("bitbucket") else "success")


def _is_success(request: dict[str, Any]) -> bool:
    return request["json"]["state"] in ("success", "SUCCESSFUL")


def _check_format(provider: str, prefix: str, sha: str, request: dict[str, Any]) -> None:
    """Each provider's documented endpoint, authentication and body."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    body = request["json"]
    assert headers["content-type"] == "application/json"
    if provider == "github":  # REST "Create a commit status"
        assert request["path"] == f"{prefix}/repos/acme/api/statuses/{sha}"
        assert headers["authorization"] == "Bearer tok-github"
        assert headers["accept"] == "application/vnd.github+json"
        assert headers["x-github-api-version"] == "2022-11-28"
        assert set(body) == {"state", "target_url", "description", "context"}
        assert body["state"] in {"error", "failure", "pending", "success"}
        assert body["target_url"].startswith("https://ci.example.com/api/v1/runs/")
    elif provider == "gitea":  # POST /repos/{owner}/{repo}/statuses/{sha}
        assert request["path"] == f"{prefix}/repos/acme/api/statuses/{sha}"
        assert headers["authorization"] == "token tok-gitea"
        assert set(body) == {"state", "target_url", "description", "context"}
        assert body["state"] in {"pending", "success", "error", "failure", "warning"}
    elif provider == "gitlab":  # POST /projects/:id/statuses/:sha
        assert request["path"] == f"{prefix}/projects/acme%2Fapi/statuses/{sha}"
        assert headers["private-token"] == "tok-gitlab"
        assert set(body) == {"state", "ref", "name", "target_url", "description"}
        assert body["state"] in {"pending", "running", "success", "failed", "canceled", "skipped"}
        assert body["ref"] == "main"
    elif provider == "bitbucket-dc":  # POST /projects/{key}/repos/{slug}/commits/{id}/builds
        assert request["path"] == f"{prefix}/projects/acme/repos/api/commits/{sha}/builds"
        assert headers["authorization"] == "Bearer tok-bitbucket-dc"
        assert set(body) == {"key", "state", "name", "url", "description", "ref"}
        assert body["state"] in {"INPROGRESS", "SUCCESSFUL", "FAILED", "CANCELLED", "UNKNOWN"}
        assert body["ref"] == "refs/heads/main" and len(body["key"]) <= 255
    else:  # Bitbucket Cloud: POST /repositories/{workspace}/{repo_slug}/commit/{commit}/statuses/build
        assert request["path"] == f"{prefix}/repositories/acme/api/commit/{sha}/statuses/build"
        assert headers["authorization"] == "Bearer tok-bitbucket"
        assert set(body) == {"key", "state", "name", "url", "description"}
        assert body["state"] in {"INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"}
        assert len(body["key"]) <= 40
    assert len(body["description"]) <= 140


TEAMS_PIPELINE = """\
version: 1
service: api
team: a
jobs:
  unit: {script: "true", required_for_merge: true}
  checkout-functional: {script: "false", required_for_merge: checkout}
  lint: {script: "true"}
"""


def test_one_required_status_per_team_and_a_failure_for_a_team_with_no_job(
    tmp_path: Path, recorder: Recorder
) -> None:
    """The project requires teams a, checkout and ledger: a's unit tests pass, checkout's
    functional tests of this service fail, and no job of ledger ran."""
    recorder.fail_next = 0
    repo = _repo(tmp_path, TEAMS_PIPELINE)
    api = f"http://127.0.0.1:{recorder.server_address[1]}"
    config = _config(tmp_path)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(config)) as client:
        for team in ("a", "checkout", "ledger"):
            client.post("/api/v1/teams", json={"name": team}, headers=admin).raise_for_status()
        body = {
            "team": "a",
            "name": "api",
            "repo_url": str(repo),
            "provider": "github",
            "status": {"api_url": api + "/gh", "repository": "acme/api", "token": "t"},
        }
        assert client.post("/api/v1/projects", json=body, headers=admin).status_code == 201
        unknown = client.patch(
            "/api/v1/projects/a/api", json={"required_teams": ["nobody"]}, headers=admin
        )
        assert unknown.status_code == 404 and "no team 'nobody'" in unknown.json()["detail"]
        patched = client.patch(
            "/api/v1/projects/a/api",
            json={"required_teams": ["a", "checkout", "ledger"]},
            headers=admin,
        )
        assert patched.json()["required_teams"] == ["a", "checkout", "ledger"]
        run = client.post("/api/v1/projects/a/api/runs", json={"ref": "main"}, headers=admin)
        assert run.status_code == 201
        reg = client.post("/api/v1/runner-tokens", json={}, headers=admin).json()["token"]
        runner = client.post("/api/v1/runners/register", json={"token": reg, "name": "r"}).json()
        headers = {"Authorization": f"Bearer {runner['token']}"}
        for _ in range(3):
            claimed = client.post(
                "/api/v1/runners/jobs/request", params={"wait": 0}, headers=headers
            ).json()
            failing = claimed["spec"]["name"] == "checkout-functional"
            outcome = {"status": "failed", "exit_code": 1} if failing else {"status": "success"}
            client.post(
                f"/api/v1/runners/jobs/{claimed['job_id']}/finish",
                json={"fence": claimed["fence"], "exit_code": 0} | outcome,
                headers=headers,
            ).raise_for_status()

        def final() -> dict[str, dict[str, Any]] | None:
            last = {r["json"]["context"]: r["json"] for r in recorder.requests}
            done = {"failure", "success", "error"}
            wanted = {"conveyor/a/required", "conveyor/checkout/required", "conveyor/a/api"}
            if not wanted <= last.keys() or not all(last[c]["state"] in done for c in wanted):
                return None
            return last

        last = _wait(final, "every required team's final status")
    assert last["conveyor/a/required"]["state"] == "success"
    assert last["conveyor/checkout/required"]["state"] == "failure"
    assert "1 failed" in last["conveyor/checkout/required"]["description"]
    assert last["conveyor/ledger/required"]["state"] == "failure"
    assert last["conveyor/ledger/required"]["description"] == (
        "no job required by team ledger ran in this pipeline"
    )
