"""A coordinator app in-process (FastAPI's TestClient runs its lifespan), a real git
repository to build from, and tokens for two teams."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.coordinator.app import create_app
from conveyor.coordinator.config import ServerConfig
from conveyor.hosting.haproxy import HAProxyRouter
from conveyor.hosting.processes import stop_everything

ADMIN = "cvy_admin_test-token"
PIPELINE = """\
version: 1
service: api
team: {team}
jobs:
  build:
    script: ["echo building", "echo password=$DB_PASSWORD", "mkdir -p .deps", "date > .deps/stamp"]
    needs: []
    cache: {{key: {{files: [conveyor.yml]}}, paths: [.deps]}}
  test: {{script: "echo testing", needs: [build]}}
"""


def git_repo(path: Path, team: str) -> Path:
    return repo_with(path, PIPELINE.format(team=team))


def repo_with(path: Path, pipeline: str) -> Path:
    """A git repository at `path` whose one commit holds `conveyor.yml` and whatever the
    caller put in `path` beforehand."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "conveyor.yml").write_text(pipeline)
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)
    return path


@dataclass
class World:
    client: TestClient
    tokens: dict[str, str]
    """`admin`, and `<team>:<role>` for teams a and b."""
    repos: dict[str, Path]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, who: str, method: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
        headers = {**self.as_(who), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    # No rate limit in the way: the cross-team walk sends hundreds of requests per token,
    # and a 429 would pass its checks for the wrong reason (test_a_token_over_its_rate_gets_429
    # tests the limit on an app of its own).
    config = ServerConfig(
        data_dir=tmp_path / "server",
        admin_token=ADMIN,
        long_poll_s=0.5,
        rate_limit="100000/second",
    )
    app = create_app(config)
    with TestClient(app) as client:
        tokens = {"admin": ADMIN}
        repos = {}
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for team in ("a", "b"):
            assert (
                client.post("/api/v1/teams", json={"name": team}, headers=admin).status_code == 201
            )
            for role in ("viewer", "developer", "maintainer", "owner"):
                response = client.post(
                    f"/api/v1/teams/{team}/tokens", json={"name": role, "role": role}, headers=admin
                )
                tokens[f"{team}:{role}"] = response.json()["token"]
            repos[team] = git_repo(tmp_path / f"repo-{team}", team)
            body = {"team": team, "name": "api", "repo_url": f"file://{repos[team]}"}
            assert client.post("/api/v1/projects", json=body, headers=admin).status_code == 201
        yield World(client, tokens, repos)


@pytest.fixture
def haproxy_required() -> None:
    from tests.deploy.conftest import require_haproxy

    require_haproxy()


@pytest.fixture
def stops_deploys(tmp_path: Path) -> Iterator[None]:
    """Stops the instances and HAProxy that a test's deployments started: they outlive
    the coordinator on purpose (`conveyor down` stops them)."""
    yield
    root = tmp_path / "server" / "deploy"
    stop_everything(root)
    asyncio.run(HAProxyRouter(root / "router").stop())
