"""HAProxy's per-request log, read live by RequestLog: every request of a slot is seen
with its status and time, also across a reload (a new worker with a new ring)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from conveyor.hosting.haproxy import HAProxyRouter
from conveyor.hosting.request_log import parse_line
from tests.deploy.backends import Backend, route_for, settle
from tests.helpers import free_port, wait_until_async

pytestmark = pytest.mark.usefixtures("haproxy_required")


def test_a_log_line_names_the_route_the_slot_and_the_request():
    parsed = parse_line('1796549948.461 fe_ekey be_ekey_b 503 2001 sC-- "GET / HTTP/1.1"')
    assert parsed is not None
    route, side, served = parsed
    assert (route, side, served.status, served.ms, served.failed) == ("ekey", "b", 503, 2001, True)
    preview = parse_line("1.0 fe_ekey_preview be_ekey_a 200 3 ---- -")
    assert preview is not None and preview[2].preview and not preview[2].failed
    assert parse_line("1.0 fe_ekey fe_ekey 200 3 ---- -") is None  # not a slot's backend
    assert parse_line("1.0 fe_ekey be_ekey_a - 3 ---- -") is None
    assert parse_line("Proxy fe_ekey stopped (cumulated conns: FE: 7, BE: 0).") is None


async def _get(client: httpx.AsyncClient, port: int, path: str, count: int) -> None:
    for _ in range(count):
        await client.get(f"http://127.0.0.1:{port}{path}")


def test_every_request_of_each_slot_is_seen_with_its_status_and_time(
    tmp_path: Path, backends: tuple[Backend, Backend]
):
    a, b = backends
    router = HAProxyRouter(tmp_path / "router")
    (tmp_path / "router").mkdir()

    async def scenario() -> None:
        route = route_for(a, b, share_b=5_000)
        await router.sync([route])
        try:
            await settle(router, route, {"sa": "UP", "sb": "UP"})
            begin = time.time()
            router.requests.start()
            await router.requests.wait_connected()
            async with httpx.AsyncClient() as client:
                await _get(client, route.port, "/", 60)
                await _get(client, route.port, "/?status=500", 40)
                await _get(client, route.port, "/?sleep_ms=150", 4)
                await _get(client, route.preview_port, "/", 5)

            def seen(side: str) -> list:  # type: ignore[type-arg]
                return router.requests.served(route.key, side, begin, time.time() + 1)

            async def all_seen() -> bool:
                return len(seen("a")) + len(seen("b")) == 109

            await wait_until_async(all_seen, timeout=5, what="109 requests in the log")
            for backend, side in ((a, "a"), (b, "b")):
                main = [s for s in seen(side) if not s.preview]
                assert [s.status for s in main] == backend.answered[: len(main)]
                assert sum(s.failed for s in main) == backend.answered.count(500)
            assert 20 <= len([s for s in seen("b") if not s.preview]) <= 84  # about half
            assert [s.preview for s in seen("b")].count(True) == 5  # the preview is slot b
            slow = [s for s in seen("a") + seen("b") if s.ms >= 150]
            assert len(slow) == 4
            stamps = [s.at for s in seen("a")]
            assert stamps == sorted(stamps) and begin <= stamps[0] <= stamps[-1] <= time.time()

            # A reload (a new environment) starts a new worker with a new ring: the
            # reader follows it, and loses none of the requests made after it.
            other = replace(route, key="eother", port=free_port(), preview_port=free_port())
            before = router.reloads
            await router.sync([route, other])
            assert router.reloads == before + 1
            after = time.time()
            async with httpx.AsyncClient() as client:
                for _ in range(30):
                    await _get(client, route.port, "/", 1)
                    await asyncio.sleep(0.05)

            def since_reload() -> int:
                end = time.time() + 1
                return len(router.requests.served(route.key, "a", after, end)) + len(
                    router.requests.served(route.key, "b", after, end)
                )

            async def all_since_reload() -> bool:
                return since_reload() >= 30

            with contextlib.suppress(AssertionError):
                await wait_until_async(all_since_reload, timeout=10, what="30 requests")
            await asyncio.sleep(0.5)  # none more may come
            found = since_reload()
            assert found == 30, (found, router.requests.reconnects, router.requests.lines)
            assert router.requests.workers == 2  # the new worker's ring was read too
        finally:
            await router.stop()

    asyncio.run(scenario())
