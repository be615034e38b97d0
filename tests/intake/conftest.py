"""A coordinator in-process with a real git repository, and helpers that sign and send
deliveries the way each provider does."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor.coordinator.app import create_app
from conveyor.coordinator.config import ServerConfig

ADMIN = "cvy_admin_intake-test"
SECRET = "intake-test-secret-0123456789"
PIPELINE = """\
version: 1
service: api
team: a
on:
  push: {paths: ["src/**"]}
  pull_request: {types: [opened, synchronize, merged]}
  tag: ["v*"]
jobs:
  build: {script: "echo build"}
"""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class Hooks:
    client: TestClient
    repo: Path
    admin: dict[str, str]

    def project(self, provider: str, name: str | None = None, **extra: Any) -> str:
        name = name or f"{provider}-svc"
        body = {
            "team": "a",
            "name": name,
            "repo_url": f"file://{self.repo}",
            "provider": provider,
            "webhook_secret": SECRET,
            **extra,
        }
        response = self.client.post("/api/v1/projects", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        assert response.json()["hook_path"] == f"/hooks/{provider}/a/{name}"
        return name

    def github(
        self,
        project: str,
        event: str,
        payload: dict[str, Any],
        delivery: str | None = None,
        secret: str = SECRET,
    ) -> Any:
        body = json.dumps(payload).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature}",
            "Content-Type": "application/json",
        }
        return self.client.post(f"/hooks/github/a/{project}", content=body, headers=headers)

    def deliveries(self, project: str) -> list[dict[str, Any]]:
        response = self.client.get(
            f"/api/v1/projects/a/{project}/deliveries?limit=500", headers=self.admin
        )
        assert response.status_code == 200
        result: list[dict[str, Any]] = response.json()
        return result

    def settled(self, project: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The project's deliveries once `count` of them are processed."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.deliveries(project)
            if len(found) >= count and all(d["state"] != "received" for d in found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries not processed in {timeout}s: {found}")
            time.sleep(0.05)

    def runs(self, project: str) -> list[dict[str, Any]]:
        response = self.client.get(f"/api/v1/projects/a/{project}/runs", headers=self.admin)
        assert response.status_code == 200
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def push_payload(ref: str, before: str, after: str, **extra: Any) -> dict[str, Any]:
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == "0" * 40,
        "deleted": after == "0" * 40,
        "forced": False,
        "commits": [],
        "head_commit": None,
        "repository": {"default_branch": "main"},
        **extra,
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit(path, {"conveyor.yml": PIPELINE, "src/app.py": "v1\n", "docs/a.md": "a\n"}, "init")
    return path


def make_hooks(tmp_path: Path, repo: Path, **config: Any) -> Iterator[Hooks]:
    app = create_app(
        ServerConfig(data_dir=tmp_path / "server", admin_token=ADMIN, inbox_poll_s=0.1, **config)
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(app) as client:
        assert client.post("/api/v1/teams", json={"name": "a"}, headers=admin).status_code == 201
        yield Hooks(client, repo, admin)


@pytest.fixture
def hooks(tmp_path: Path, repo: Path) -> Iterator[Hooks]:
    yield from make_hooks(tmp_path, repo)


@pytest.fixture(scope="module")
def fuzz_hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    """One server for a whole fuzz module, with a project per provider named after it."""
    root = tmp_path_factory.mktemp("fuzz")
    path = root / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit(path, {"conveyor.yml": PIPELINE, "src/app.py": "v1\n"}, "init")
    for hooks in make_hooks(root, path, hook_rate_limit="100000/second"):
        for provider in ("github", "gitlab", "gitea", "bitbucket"):
            hooks.project(provider, provider)
        yield hooks
