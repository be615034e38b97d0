"""The coordinator's own machine as a host of the fleet (CONVEYOR_EMBEDDED_AGENT): a real
`conveyor serve` runs an agent in its process that joins the built-in pool `local`; a
service placed with `labels: {conveyor.local: "true"}` is started, watched, rolled and
stopped by that agent (its pid files are the agent's, none are the local target's), its
traffic goes through the coordinator's HAProxy with no failed request, every team may
place on it, nobody can make tokens for the pool or share it, and after the
coordinator's restart the agent adopts the instance it left running."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    QUOTE,
    _serve,
    assert_no_failures,
    load,
    start_stack,
    stop_stack,
)
from tests.helpers import healthy, wait_until

LOCAL = '  placement: {labels: {conveyor.local: "true"}}\n'
EMBEDDED = {"CONVEYOR_EMBEDDED_AGENT": "true", "CONVEYOR_LOCAL_HOST_NAME": "coordinator"}


def _pids(root: Path) -> dict[str, str]:
    return {p.stem: p.read_text().split()[0] for p in (root / "pids").glob("*.pid")}


@pytest.mark.usefixtures("haproxy_required")
def test_the_coordinators_machine_runs_services_through_its_embedded_agent(tmp_path: Path):
    stack = start_stack(tmp_path, extra_env=EMBEDDED)
    try:
        host = wait_until(
            lambda: (
                (r := stack.api("GET", "/api/v1/hosts/coordinator")).status_code == 200 and r.json()
            ),
            30,
            "the embedded agent's host",
        )
        assert (host["pool"], host["address"], host["state"]) == ("local", "127.0.0.1", "up")
        assert host["labels"] == {"conveyor.local": "true"} and host["team"] is None

        v1 = stack.upload("v1", extra=LOCAL)
        first = stack.deploy("production", v1)
        stack.wait_phase("production", first["number"], {"succeeded"}, timeout=90)
        agent_pids, target_pids = stack.data / "agent" / "host", stack.data / "deploy"
        assert len(_pids(agent_pids)) == 2 and not _pids(target_pids)  # the agent's, only
        url = str(stack.status("production")["url"]) + QUOTE
        v2 = stack.upload("v2", extra=LOCAL)
        with load(url, keepalive=True, rate=250) as running:
            time.sleep(1)
            rolled = stack.deploy("production", v2, strategy="rolling")
            stack.wait_phase("production", rolled["number"], {"succeeded"}, timeout=120)
            time.sleep(1)
        assert_no_failures(running.result, 1000)
        assert set(running.result["versions"]) == {"v1", "v2"}
        # v1's instances were stopped by the agent once drained: two instances run.
        wait_until(lambda: len(_pids(agent_pids)) == 2, 30, "v1's instances to stop")

        # The pool is the coordinators' own: shared with every team, by nobody.
        made = stack.api("POST", "/api/v1/pools/local/host-tokens", json={})
        assert made.status_code == 409 and "every team" in made.text, made.text
        stack.cli("team", "create", "b")
        shared = stack.api("PUT", "/api/v1/pools/local/teams/b")
        assert shared.status_code == 409 and "every team" in shared.text, shared.text

        # A restart: the agent joins again (a new token, the old one revoked) and adopts
        # what it left running rather than starting it again.
        before = _pids(agent_pids)
        server = stack.procs.pop()
        server.terminate()
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn's way out
        port = int(stack.urls[0].rsplit(":", 1)[1])
        _serve(stack, port, tmp_path / "server-again.log", {})
        wait_until(lambda: healthy(stack.urls[0]), 30, "the coordinator again")
        tokens = stack.api("GET", "/api/v1/host-tokens").json()
        embedded = [t for t in tokens if t["pool"] == "local"]
        assert len(embedded) == 2 and sum(t["revoked_at"] is None for t in embedded) == 1
        time.sleep(3)  # a few of the agent's looks
        assert _pids(agent_pids) == before
        status = stack.status("production")
        assert [i["state"] for i in status["instances"]] == ["ready", "ready"], status
    finally:
        stop_stack(stack)
