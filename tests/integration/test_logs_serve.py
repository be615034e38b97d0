"""A real `conveyor serve` logs JSON lines: one per request, with the request id the
client sent (or a new one, sent back) and the route's template and parameters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from tests.helpers import ADMIN, conveyor, free_port, healthy, process, wait_until


def test_each_request_is_one_json_line_with_its_request_id(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {"CONVEYOR_ADMIN_TOKEN": ADMIN, "CONVEYOR_LOG_FORMAT": "json"}
    env.pop("CONVEYOR_DATABASE_URL", None)
    log = tmp_path / "server.log"
    args = conveyor("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    with process(args, log, env):
        wait_until(lambda: healthy(url), 30, "the server")
        admin = {"Authorization": f"Bearer {ADMIN}"}
        named = httpx.get(f"{url}/api/v1/teams", headers=admin | {"X-Request-Id": "req-42"})
        assert named.headers["x-request-id"] == "req-42"
        fresh = httpx.get(f"{url}/api/v1/projects/nope/none", headers=admin)
        assert fresh.status_code == 404 and len(fresh.headers["x-request-id"]) == 32

        def logged() -> list[dict[str, object]]:
            found = [
                json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")
            ]
            return [f for f in found if f.get("logger") == "conveyor.api"]

        requests = wait_until(lambda: len(logged()) >= 2 and logged(), 10, "two request lines")
    first, second = requests[:2]
    assert first["request_id"] == "req-42" and first["route"] == "/api/v1/teams"
    assert first["status"] == 200 and first["level"] == "info" and first["event"].startswith("GET")
    assert second["request_id"] == fresh.headers["x-request-id"] and second["status"] == 404
    assert second["route"] == "/api/v1/projects/{team}/{project}"
    assert (second["team"], second["project"]) == ("nope", "none")
    assert all(line.startswith("{") for line in log.read_text().splitlines() if line.strip())
