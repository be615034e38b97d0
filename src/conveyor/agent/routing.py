"""A router host's routes as its agent holds them: HAProxy (hosting.haproxy, the same
driver the coordinator runs for itself) bound to the host's address, given every route
of the desired state; what it holds reported back (the version of each route it applied,
and each server as its own checks see it), and, once a second, the requests each
backend answered, summed up per second (counts by status and a latency histogram that
adds up across routers: protocol.agent.ServedSecond). HAProxy runs in its own session:
it keeps serving while the agent restarts, and the next agent adopts it."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from conveyor.domain.traffic import latency_bucket
from conveyor.hosting.haproxy import HAProxyRouter
from conveyor.hosting.routing import (
    HealthCheck,
    Route,
    RouterError,
    Server,
    ServerState,
    ServerStatus,
)
from conveyor.protocol.agent import (
    DesiredRoute,
    ObservedRoute,
    ObservedServer,
    RouteServer,
    ServedSecond,
)

log = logging.getLogger("conveyor.agent")
SUMMARY_S = 1.0
"""How often the requests of the seconds that have ended are summed up and reported."""
SETTLE_S = 0.5
"""A second is summed up this long after it ended (HAProxy's log reaches the reader
within milliseconds)."""


def route_of(desired: DesiredRoute) -> Route:
    """The route HAProxy is to hold."""
    health = desired.health
    return Route(
        key=desired.key,
        port=desired.port,
        preview_port=desired.preview_port,
        health=HealthCheck(health.path, health.interval_ms, health.timeout_ms, health.fall),
        canary_slot=desired.canary_slot,
        share_b=desired.share_b,
        servers={
            slot: tuple(_server(s) for s in members) for slot, members in desired.servers.items()
        },
    )


def _server(s: RouteServer) -> Server:
    return Server(s.name, s.port, s.weight, ServerState(s.state), s.address)


class HostRoutes:
    def __init__(self, run: Path, address: str, clock: Callable[[], float] = time.time) -> None:
        self.router = HAProxyRouter(run, bind=address)
        self.clock = clock
        self.wanted: list[DesiredRoute] = []
        self.versions: dict[str, int] = {}
        self.problems: dict[str, str] = {}
        self.pending: list[ServedSecond] = []
        """Summaries not reported yet (kept until a report carries them)."""
        self._summed_to = math.floor(clock())
        self._seen: tuple[object, ...] = ()
        self._statuses: dict[str, dict[str, ServerStatus]] = {}
        """Per route, its servers as the last look saw them."""

    async def converge(self, wanted: list[DesiredRoute]) -> None:
        """Hold every route of `wanted` (and no other)."""
        self.wanted = wanted
        routes = [route_of(d) for d in wanted]
        try:
            await self.router.sync(routes)
        except (RouterError, OSError) as exc:
            log.error("HAProxy did not take the routes: %s", exc)
            self.problems = {d.key: f"HAProxy did not take the routes: {exc}" for d in wanted}
            return
        self.problems = {}
        if wanted:
            self.router.requests.start()  # every request from now on is summed up
        for desired, route in zip(wanted, routes, strict=True):
            try:
                await self.router.apply(route)
            except (RouterError, OSError) as exc:
                self.problems[desired.key] = f"{exc}"
                log.warning("route %s: %s", desired.key, exc)
                continue
            self.versions[desired.key] = desired.version
        for key in set(self.versions) - {d.key for d in wanted}:
            del self.versions[key]

    async def observed(self) -> list[ObservedRoute]:
        out = []
        for desired in self.wanted:
            problem = self.problems.get(desired.key)
            try:
                seen = await self.router.status(desired.key) if self.router.running() else {}
            except (RouterError, OSError) as exc:
                seen, problem = {}, problem or f"{exc}"
            self._statuses[desired.key] = seen
            servers = [ObservedServer(**dataclasses.asdict(s)) for s in seen.values()]
            version = self.versions.get(desired.key, 0)
            out.append(
                ObservedRoute(key=desired.key, version=version, servers=servers, problem=problem)
            )
        return out

    async def watch(self) -> bool:
        """Restart HAProxy if it died, and try again a route it did not take (a reload
        answers on the old worker's socket for a moment); whether what a report carries
        of the routes changed (a server's status, check or weight) or summaries are
        due."""
        if self.wanted and not self.router.running():
            log.warning("HAProxy is not running; starting it again")
            await self.converge(self.wanted)
        elif any(self.versions.get(d.key) != d.version for d in self.wanted):
            await self.converge(self.wanted)
        else:
            await self._hold()
        seen = tuple(
            (
                r.key,
                r.version,
                r.problem,
                tuple(
                    (s.name, s.status, s.check.removeprefix("*").strip(), s.weight)
                    for s in r.servers
                ),
            )
            for r in await self.observed()
        )
        changed = seen != self._seen
        self._seen = seen
        return changed or await self.summarise()

    async def _hold(self) -> None:
        """Apply every route again against what the last look saw (level-triggered, as
        the coordinator's passes do): a new server enters at weight 0 and gets its
        weight once its check has passed, which a later apply sees."""
        for desired in self.wanted:
            try:
                await self.router.apply(route_of(desired), self._statuses.get(desired.key))
            except (RouterError, OSError) as exc:
                self.problems[desired.key] = f"{exc}"
                log.warning("route %s: %s", desired.key, exc)
            else:
                self.problems.pop(desired.key, None)

    async def summarise(self) -> bool:
        """Sum up the seconds that have ended since the last time; whether any request
        was in them."""
        end = math.floor(self.clock() - SETTLE_S)
        if end <= self._summed_to:
            return False
        start, self._summed_to = self._summed_to, end
        found = False
        for desired in self.wanted:
            for side in ("a", "b"):
                buckets: dict[tuple[bool, int], tuple[dict[str, int], dict[str, int]]] = {}
                for served in await self.router.served(desired.key, side, start, end):
                    statuses, latency = buckets.setdefault(
                        (served.preview, math.floor(served.at)), ({}, {})
                    )
                    code, bucket = str(served.status), str(latency_bucket(served.ms))
                    statuses[code] = statuses.get(code, 0) + 1
                    latency[bucket] = latency.get(bucket, 0) + 1
                for (preview, second), (statuses, latency) in sorted(buckets.items()):
                    found = True
                    self.pending.append(
                        ServedSecond(
                            key=desired.key,
                            side=side,
                            preview=preview,
                            second=second,
                            statuses=statuses,
                            latency=latency,
                        )
                    )
        return found

    async def close(self) -> None:
        """Stop reading HAProxy's log (HAProxy itself keeps serving)."""
        await self.router.requests.close()
