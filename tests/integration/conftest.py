"""The real-process `server` fixture, shared by the integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import ADMIN, conveyor, free_port, healthy, process, wait_until


@contextmanager
def serving(
    tmp_path: Path, extra: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `conveyor serve` on SQLite in `tmp_path/server`, with the admin token and
    `extra` in its environment; yields its URL and the environment a CLI needs."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "CONVEYOR_ADMIN_TOKEN": ADMIN,
        "CONVEYOR_SERVER": url,
        "CONVEYOR_TOKEN": ADMIN,
        **(extra or {}),
    }
    env.pop("CONVEYOR_DATABASE_URL", None)
    args = conveyor("serve", "--port", str(port), "--data-dir", str(tmp_path / "server"))
    with process(args, tmp_path / "server.log", env):
        wait_until(lambda: healthy(url), 30, "the server")
        yield url, env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with serving(tmp_path) as running:
        yield running
