"""Test backends for the HAProxy router's own tests: HTTP servers that answer their name,
and whose health, failures and latency a test controls."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx

from conveyor.hosting.haproxy import HAProxyRouter
from conveyor.hosting.routing import HealthCheck, Route, Server, ServerStatus
from tests.helpers import free_port


class Backend:
    """An HTTP server that answers its own name, and whose /healthz can be made to fail."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        self.answered: list[int] = []
        """The status of every request but health checks, in order."""
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path == "/healthz" and not backend.healthy:
                    status, body = 503, b"unhealthy"
                elif "status" in query:  # /?status=500 answers that status
                    status, body = int(query["status"][0]), backend.name.encode()
                else:
                    status, body = 200, backend.name.encode()
                if "sleep_ms" in query:
                    time.sleep(int(query["sleep_ms"][0]) / 1000)
                if url.path != "/healthz":
                    backend.answered.append(status)
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
