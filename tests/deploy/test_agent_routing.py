"""A router host's routes as its agent holds them, against a real HAProxy on loopback:
the route of the desired state is held (frontends, servers, the split), what HAProxy's
own checks see is reported with the version held, a route that no longer comes is
dropped, a dead HAProxy is started again, and the requests of each second that ended are
summed up per backend into counts by status and a latency histogram, each once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from conveyor.agent.routing import HostRoutes
from conveyor.domain.traffic import bucket_ms
from conveyor.protocol.agent import DesiredRoute, RouteHealth, RouteServer
from tests.deploy.backends import Backend
from tests.helpers import free_port, wait_until_async

pytestmark = pytest.mark.usefixtures("haproxy_required")


def desired(a: Backend, b: Backend, version: int, share_b: int, port: int) -> DesiredRoute:
    return DesiredRoute(
        key="eagent",
        version=version,
        port=port,
        preview_port=free_port(),
        health=RouteHealth(path="/healthz", interval_ms=200, timeout_ms=500, fall=2),
        share_b=share_b,
        servers={
            "a": [RouteServer(name="sa", address="127.0.0.1", port=a.port, weight=256)],
            "b": [RouteServer(name="sb", address="127.0.0.1", port=b.port, weight=256)],
        },
    )


@pytest.fixture
async def routes(tmp_path: Path) -> AsyncIterator[HostRoutes]:
    held = HostRoutes(tmp_path / "router", "127.0.0.1")
    try:
        yield held
    finally:
        await held.close()
        await held.router.stop()


async def test_a_router_host_holds_its_routes_and_reports_what_haproxy_sees(
    routes: HostRoutes,
):
    a, b = Backend("a"), Backend("b")
    try:
        port = free_port()
        await routes.converge([desired(a, b, 1, 0, port)])

        async def both_up() -> bool:
            (seen,) = await routes.observed()
            return seen.version >= 1 and {s.name: s.status for s in seen.servers} == {
                "sa": "UP",
                "sb": "UP",
            }

        await wait_until_async(both_up, timeout=10, what="both servers UP by HAProxy's checks")
        await routes.router.requests.wait_connected()
        assert await routes.watch()  # what a report carries changed since the last look
        assert not await routes.watch()  # nothing changed, and no request was made

        # Half of the traffic to b, as the second version says.
        await routes.converge([desired(a, b, 2, 5000, port)])
        async with httpx.AsyncClient() as client:
            answers = [
                (await client.get(f"http://127.0.0.1:{port}/?sleep_ms=20")).text for _ in range(40)
            ]
            failing = await client.get(f"http://127.0.0.1:{port}/?status=500")
        assert 8 <= answers.count("b") <= 32, answers
        assert failing.status_code == 500
        (seen,) = await routes.observed()
        assert seen.version == 2 and seen.problem is None

        # Each second that ended is summed up once, per backend.
        ended = time.time()

        async def summed() -> bool:
            await routes.summarise()
            return routes._summed_to > ended + 0.5

        await wait_until_async(summed, timeout=5, what="the seconds to be summed up")
        total = {
            side: sum(sum(s.statuses.values()) for s in routes.pending if s.side == side)
            for side in "ab"
        }
        assert total["a"] + total["b"] == 41, total  # the 40 and the failing one
        assert total["b"] - answers.count("b") in (0, 1), total
        assert sum(s.statuses.get("500", 0) for s in routes.pending) == 1
        slow = [
            int(bucket) for s in routes.pending for bucket, n in s.latency.items() for _ in range(n)
        ]
        assert sum(bucket_ms(b) >= 20 for b in slow) >= 40
        assert not await routes.summarise()  # nothing new since

        # HAProxy dies: the next look starts it again with the same routes.
        for pid in routes.router.processes():
            os.kill(pid, signal.SIGKILL)
        await wait_until_async(
            lambda: asyncio.sleep(0.05, result=not routes.router.running()),
            timeout=5,
            what="HAProxy to be gone",
        )
        await routes.watch()
        assert routes.router.running()
        await wait_until_async(both_up, timeout=10, what="both servers UP again")

        # A route no longer desired is dropped.
        await routes.converge([])
        assert await routes.observed() == [] and routes.versions == {}
    finally:
        a.close()
        b.close()
