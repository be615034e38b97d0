"""A real `conveyor agent` against a real `conveyor serve`: it joins with a host token,
holds its host's lease by long-polling, hears a drain at once, is found lost when it is
killed, joins again with a raised fence when it comes back, and stops with the
coordinator's reason when its token is revoked."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ADMIN, agent_args, cli, process, wait_until
from tests.integration.conftest import serving

LEASE_S = 3.0


@pytest.fixture
def fleet_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with serving(tmp_path, {"CONVEYOR_HOST_LEASE_SECONDS": str(LEASE_S)}) as running:
        yield running


def _admin(url: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(
        method, url + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10, **kwargs
    )


def _host(url: str, name: str) -> dict[str, object] | None:
    found = _admin(url, "GET", f"/api/v1/hosts/{name}")
    return dict(found.json()) if found.status_code == 200 else None


def _agent_args(url: str, token: str, name: str) -> list[str]:
    return agent_args(
        url,
        token,
        name,
        "127.0.0.1",
        None,
        "--labels",
        "zone=a,role=web",
        "--capacity",
        "slots=4,memory=1GiB",
    )


def test_an_agent_holds_its_lease_is_lost_when_killed_and_joins_again(
    fleet_server: tuple[str, dict[str, str]], tmp_path: Path
):
    url, env = fleet_server
    assert _admin(url, "POST", "/api/v1/teams", json={"name": "pay"}).status_code == 201
    token = cli(env, "host-token", "create", "--team", "pay", "--name", "fleet").strip()
    assert token.startswith("cvy_host_"), token
    args = _agent_args(url, token, "web-1")
    with process(args, tmp_path / "agent-1.log", env) as agent:
        host = wait_until(lambda: _host(url, "web-1"), 20, "the host to join")
        assert host["state"] == "up" and host["labels"] == {"zone": "a", "role": "web"}
        assert (host["slots"], host["memory"]) == (4, 2**30)
        # Held for longer than a lease: the agent renews it with its polls.
        time.sleep(LEASE_S * 1.5)
        assert _host(url, "web-1")["state"] == "up"  # type: ignore[index]
        listed = cli(env, "host", "list")
        assert "web-1" in listed and "zone=a" in listed and "up" in listed, listed
        assert cli(env, "host", "drain", "web-1").strip() == "host web-1: draining"
        wait_until(
            lambda: "(draining)" in (tmp_path / "agent-1.log").read_text(),
            10,
            "the agent to hear of the drain",
        )
        assert cli(env, "host", "undrain", "web-1").strip() == "host web-1: up"
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    lost = wait_until(
        lambda: (h := _host(url, "web-1")) and h["state"] == "lost" and h,
        LEASE_S + 10,
        "the killed agent's host to be found lost",
    )
    assert lost["state"] == "lost"
    with process(args, tmp_path / "agent-2.log", env) as agent:
        wait_until(
            lambda: _host(url, "web-1")["state"] == "up",  # type: ignore[index]
            20,
            "the host to join again",
        )
        # Revoked, the token stops the agent at its next call, with the reason.
        tokens = _admin(url, "GET", "/api/v1/host-tokens").json()
        (made,) = [t for t in tokens if t["pool"] != "local"]  # not the embedded agent's
        assert cli(env, "host-token", "revoke", made["id"]).strip() == "host token fleet revoked"
        assert agent.wait(timeout=20) == 2
    log = (tmp_path / "agent-2.log").read_text()
    assert "refused host web-1" in log and "revoked" in log, log
