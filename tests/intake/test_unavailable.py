"""When PostgreSQL refuses connections, webhooks get 503 with Retry-After (providers retry
it), and deliveries are accepted again as soon as it is back."""

from __future__ import annotations

from pathlib import Path

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from conveyor.coordinator.app import create_app
from conveyor.coordinator.config import ServerConfig
from tests.intake.conftest import ADMIN, Hooks, git, push_payload


def _allow(admin_url: str, database: str, allowed: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )


def test_webhooks_get_503_while_the_database_is_down(
    postgres_url: str, tmp_path: Path, repo: Path
) -> None:
    url = make_url(postgres_url)
    admin_url = url.set(database="postgres").render_as_string(hide_password=False)
    database = str(url.database)
    config = ServerConfig(
        data_dir=tmp_path / "server", database_url=postgres_url, admin_token=ADMIN
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(config)) as client:
        hooks = Hooks(client, repo, admin)
        assert client.post("/api/v1/teams", json={"name": "a"}, headers=admin).status_code == 201
        project = hooks.project("github")
        head = git(repo, "rev-parse", "HEAD")
        payload = push_payload("refs/heads/main", "0" * 40, head)
        _allow(admin_url, database, False)
        try:
            down = hooks.github(project, "push", payload, delivery="while-down")
            assert down.status_code == 503, down.text
            assert down.headers["Retry-After"] == "5"
            assert down.json()["error"] == "unavailable"
            assert client.get("/readyz").status_code == 503
        finally:
            _allow(admin_url, database, True)
        # The provider retries the same delivery: now it is stored, once.
        back = hooks.github(project, "push", payload, delivery="while-down")
        assert back.status_code == 202, back.text
        assert hooks.github(project, "push", payload, delivery="while-down").json() == {
            "status": "duplicate",
            "delivery_key": "while-down",
        }
        (done,) = hooks.settled(project, 1)
        assert done["state"] == "done" and len(done["runs"]) == 1
