"""The HAProxy router on its own: a real HAProxy started by HAProxyRouter, two backends
served by this test, and requests over loopback."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from conveyor.hosting.haproxy import HAProxyRouter, render
from conveyor.hosting.routing import HealthCheck, Route, Server
from tests.deploy.backends import Backend, answers, route_for, settle

pytestmark = pytest.mark.usefixtures("haproxy_required")


def test_the_split_never_sends_a_share_to_a_slot_with_no_server_up(
    tmp_path: Path, backends: tuple[Backend, Backend]
):
    a, b = backends
    router = HAProxyRouter(tmp_path / "router")
    (tmp_path / "router").mkdir()

    async def scenario() -> None:
        everything_to_b = route_for(a, b, share_b=10_000)
        await router.sync([everything_to_b])
        try:
            await settle(router, everything_to_b, {"sa": "UP", "sb": "UP"})
            assert set(answers(everything_to_b.port, 20)) == {"200:b"}
            b.healthy = False
            await settle(router, everything_to_b, {"sb": "DOWN"})
            assert set(answers(everything_to_b.port, 40)) == {"200:a"}
            b.healthy = True
            await settle(router, everything_to_b, {"sb": "UP"})
            assert set(answers(everything_to_b.port, 20)) == {"200:b"}

            nothing_to_b = replace(everything_to_b, share_b=0)
            a.healthy = False
            await settle(router, nothing_to_b, {"sa": "DOWN", "sb": "UP"})
            assert set(answers(nothing_to_b.port, 40)) == {"200:b"}
            b.healthy = False
            await settle(router, nothing_to_b, {"sa": "DOWN", "sb": "DOWN"})
            left = answers(nothing_to_b.port, 5)
            assert {answer[:4] for answer in left} == {"503:"}, left  # nowhere left to go
        finally:
            await router.stop()

    asyncio.run(scenario())


def test_the_checks_follow_the_runtime_health_settings(tmp_path: Path):
    route = Route(
        key="ecfg",
        port=1,
        preview_port=2,
        health=HealthCheck(path="/ready", interval_ms=3000, timeout_ms=1500, fall=5),
        canary_slot="b",
        share_b=0,
        servers={"a": (Server("s1", 9, 100),)},
    )
    config = render([route], tmp_path)
    assert "option httpchk GET /ready" in config
    assert "timeout check 1500ms" in config
    assert (
        "server s1 127.0.0.1:9 weight 100 "
        "check inter 3000ms fastinter 250ms downinter 500ms rise 2 fall 5"
    ) in config
