"""The HAProxy router on its own: a real HAProxy started by HAProxyRouter, two backends
served by this test, and requests over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conveyor.deploy.router.base import HealthCheck, Route, Server, ServerStatus
from conveyor.deploy.router.haproxy import HAProxyRouter, render
from tests.helpers import free_port

pytestmark = pytest.mark.usefixtures("haproxy_required")


class Backend:
    """An HTTP server that answers its own name, and whose /healthz can be made to fail."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz" and not backend.healthy:
                    status, body = 503, b"unhealthy"
                else:
                    status, body = 200, backend.name.encode()
                with contextlib.suppress(ConnectionError):  # a check may hang up first
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    a, b = Backend("a"), Backend("b")
    yield a, b
    a.close()
    b.close()


def route_for(a: Backend, b: Backend, share_b: int) -> Route:
    return Route(
        key="etest",
        port=free_port(),
        preview_port=free_port(),
        health=HealthCheck(path="/healthz", interval_ms=200, timeout_ms=500, fall=2),
        canary_slot="b",
        share_b=share_b,
        servers={"a": (Server("sa", a.port, 100),), "b": (Server("sb", b.port, 100),)},
    )


async def settle(router: HAProxyRouter, route: Route, want: dict[str, str]) -> None:
    """Apply the route until each named server has the wanted status (UP or DOWN)."""
    seen: dict[str, ServerStatus] = {}
    for _ in range(200):
        await router.apply(route)
        seen = await router.status(route.key)
        if all(seen[name].status.startswith(status) for name, status in want.items()):
            if all(s.weight == 100 for s in seen.values() if s.status.startswith("UP")):
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"servers never reached {want}: {seen}")


def answers(port: int, count: int) -> list[str]:
    with httpx.Client() as client:
        return [
            f"{r.status_code}:{r.text}"
            for r in (client.get(f"http://127.0.0.1:{port}/") for _ in range(count))
        ]


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
