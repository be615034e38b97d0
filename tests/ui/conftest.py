"""The UI in-process: the coordinator's app with its pages, one team `a` with a project
whose repository holds a pipeline, and a token per role (and team `b`'s owner)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.coordinator.app import create_app
from conveyor.coordinator.config import ServerConfig
from tests.api.conftest import ADMIN, git_repo, haproxy_required, stops_deploys  # noqa: F401

ROLES = ("viewer", "developer", "maintainer", "owner")


@dataclass
class Site:
    client: TestClient
    tokens: dict[str, str]

    def login(self, who: str) -> TestClient:
        """The client, logged in as `who` (`admin` or `<team>:<role>`)."""
        self.client.cookies.clear()
        answer = self.client.post(
            "/login", data={"token": self.tokens[who]}, follow_redirects=False
        )
        assert answer.status_code == 303, answer.text
        return self.client

    def csrf(self, path: str = "/") -> str:
        page = self.client.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None, page.text
        return found.group(1)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    config = ServerConfig(
        data_dir=tmp_path / "server", admin_token=ADMIN, rate_limit="100000/second"
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(config)) as client:
        tokens = {"admin": ADMIN}
        for team in ("a", "b"):
            client.post("/api/v1/teams", json={"name": team}, headers=admin).raise_for_status()
            for role in ROLES:
                made = client.post(
                    f"/api/v1/teams/{team}/tokens",
                    json={"name": f"{role}-{team}", "role": role},
                    headers=admin,
                )
                tokens[f"{team}:{role}"] = made.json()["token"]
            repo = git_repo(tmp_path / f"repo-{team}", team)
            body = {"team": team, "name": "api", "repo_url": f"file://{repo}"}
            client.post("/api/v1/projects", json=body, headers=admin).raise_for_status()
        yield Site(client, tokens)
