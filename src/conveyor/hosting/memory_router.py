"""A traffic router that holds its routes in memory: the fake of TrafficRouter, shipped
in the package so that the deployment manager can be driven in-process (STYLE.md: one
small interface per outside system, with a fake next to it).

It health-checks a server by asking `probe(port)` (FakeTarget.answers, for example),
counts the same `fall` consecutive failures HAProxy would before marking it DOWN, and
can be stopped (as if HAProxy died), kept from starting, or made to fail its next calls.
`pick` sends one request the way the split says, so a test can assert that traffic
always had a server.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.domain.traffic import Served
from conveyor.hosting.request_log import RequestLog
from conveyor.hosting.routing import (
    SHARE_SCALE,
    Route,
    RouterError,
    Server,
    ServerState,
    ServerStatus,
)


@dataclass
class _Check:
    """What the router remembers of one server's health checks."""

    up: bool = False
    failures: int = 0
    since: float = field(default_factory=time.monotonic)
    requests: int = 0


class MemoryRouter:
    """TrafficRouter in memory. Not safe across processes; safe across tasks."""

    def __init__(
        self, probe: Callable[[int], bool], clock: Callable[[], float] = time.time
    ) -> None:
        self.probe = probe
        self.clock = clock
        """The wall clock a request is filed at (tests share it with the manager's)."""
        self.routes: dict[str, Route] = {}
        self.syncs = 0
        """How often `sync` (re)started it."""
        self.starts_tried = 0
        """How often `sync` tried to start it (failed tries included)."""
        self.refuse_start: str | None = None
        """While set, starting it fails with this (as HAProxy does when a port is taken)."""
        self.applied = 0
        self._running = False
        self._checks: dict[tuple[str, str], _Check] = {}
        self._failing = 0
        self.requests = RequestLog(Path("/nonexistent"))
        """Requests filed by `record` (its reader is never started)."""

    # -- fault injection -------------------------------------------------------------

    def crash(self) -> None:
        """The router process died: its routes are gone until the next `sync`."""
        self._running = False
        self.routes.clear()
        self._checks.clear()

    def fail_next(self, calls: int) -> None:
        """The next `calls` calls of apply or status raise RouterError."""
        self._failing = calls

    def _maybe_fail(self, what: str) -> None:
        if not self._running:
            raise OSError(f"router not running ({what})")
        if self._failing > 0:
            self._failing -= 1
            raise RouterError(f"injected failure ({what})")

    # -- TrafficRouter ---------------------------------------------------------------

    def running(self) -> bool:
        return self._running

    async def sync(self, routes: Sequence[Route]) -> None:
        if not self._running:
            self.starts_tried += 1
            if self.refuse_start is not None:
                raise RouterError(self.refuse_start)
            self.syncs += 1
        self._running = True
        for route in routes:
            self.routes[route.key] = route

    async def apply(self, route: Route, seen: Mapping[str, ServerStatus] | None = None) -> None:
        self._maybe_fail("apply")
        self.applied += 1
        self.routes[route.key] = route

    async def status(self, key: str) -> dict[str, ServerStatus]:
        self._maybe_fail("status")
        route = self.routes.get(key)
        if route is None:
            return {}
        out: dict[str, ServerStatus] = {}
        for slot in ("a", "b"):
            for server in route.slot(slot):
                out[server.name] = self._check(route, slot, server)
        return out

    async def served(self, route: str, side: str, start: float, end: float) -> list[Served]:
        return self.requests.served(route, side, start, end)

    def record(
        self,
        route: str,
        side: str,
        status: int,
        ms: float,
        *,
        at: float = 0.0,
        preview: bool = False,
    ) -> None:
        """One request the slot answered (`at`: when, else now; `preview`: through the
        preview URL), as HAProxy would log it."""
        self.requests.record(route, side, Served(at or self.clock(), status, ms, preview))

    async def stop(self) -> None:
        self.crash()

    # -- what a test reads -----------------------------------------------------------

    def _check(self, route: Route, slot: str, server: Server) -> ServerStatus:
        check = self._checks.setdefault((route.key, server.name), _Check())
        ok = self.probe(server.port)
        if ok:
            if not check.up:
                check.up, check.since = True, time.monotonic()
            check.failures = 0
        else:
            check.failures += 1
            if check.up and check.failures >= route.health.fall:
                check.up, check.since = False, time.monotonic()
        if server.state is ServerState.DRAIN:
            status = "DRAIN"
        else:
            status = "UP" if check.up else "DOWN"
        return ServerStatus(
            name=server.name,
            backend=f"{route.key}_{slot}",
            status=status,
            check="L7OK" if ok else "L7STS",
            weight=server.weight if server.state is ServerState.READY else 0,
            sessions=0,
            queued=0,
            requests=check.requests,
            errors_5xx=0,
            since_s=int(time.monotonic() - check.since),
        )

    def serving(self, key: str, slot: str) -> list[Server]:
        """The slot's servers that would take a request now: weighted, ready, and
        answering their health check."""
        route = self.routes.get(key)
        if route is None or not self._running:
            return []
        return [
            s
            for s in route.slot(slot)
            if s.state is ServerState.READY and s.weight > 0 and self.probe(s.port)
        ]

    def send(self, key: str, answer: Callable[[int], tuple[int, float]]) -> int:
        """One request through the split, answered by `answer(port)` (status, ms) and
        filed in the request log as HAProxy would; 503 when no server takes it."""
        route = self.routes.get(key)
        chosen = self.pick(key)
        if route is None or chosen is None:
            return 503
        side = "a" if chosen in route.slot("a") else "b"
        status, ms = answer(chosen.port)
        self.record(key, side, status, ms)
        return status

    def pick(self, key: str, draw: float | None = None) -> Server | None:
        """Where one request goes: to slot b with probability share_b (a slot with no
        server gives its share to the other, as the HAProxy config does); None for a
        503."""
        route = self.routes.get(key)
        if route is None:
            return None
        roll = random.random() if draw is None else draw
        first, second = ("b", "a") if roll * SHARE_SCALE < route.share_b else ("a", "b")
        for slot in (first, second):
            members = self.serving(key, slot)
            if members:
                chosen = members[int(roll * 1_000_003) % len(members)]
                self._checks.setdefault((key, chosen.name), _Check()).requests += 1
                return chosen
        return None
