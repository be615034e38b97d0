"""Where the deployment manager's routes are held: by the coordinator's own HAProxy, or,
for an environment in the fleet of a team that has router hosts, by every one of those
router hosts (HAProxy on each, driven by its agent: decision 0027). `Routers` is the one
TrafficRouter the manager drives; it sends each route where it is held.

A route on router hosts is stored with a version (storage.routes) and the router hosts'
generations are raised, so that their agents' long polls answer at once. `apply` returns
once every router host that is up reports holding the new version (a weight counts as
applied when every router confirms it). A server's status is the routers' together: it
is healthy (so a weight may move to it) only when every router's own checks have it up;
it takes traffic when any router may still send it some; it is down when every router
has it down. A lost router host counts for nothing until it is back and has re-synced:
its agent's first answer after joining again carries every route."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from conveyor.domain.clock import utcnow
from conveyor.domain.hosts import HostState
from conveyor.domain.traffic import Served, bucket_ms
from conveyor.hosting.routing import Route, RouterError, ServerStatus, TrafficRouter
from conveyor.protocol.agent import DesiredRoute, ObservedServer
from conveyor.storage import hosts as host_rows
from conveyor.storage import routes as route_rows
from conveyor.storage.database import Database

CONFIRM_S = 3.0
"""How long `apply` waits for every router host to hold a new version of a route."""
CONFIRM_POLL_S = 0.05
"""How often it looks while it waits (a report on this replica wakes it at once)."""
SAMPLE_LAG_S = 3
"""A router host reports each second's requests within this long after it ends: an
analysis window [start, end) reads the seconds of [start - lag, end - lag), so that
consecutive windows together read every second once, each complete."""
SAMPLES_KEPT_S = 600
TEAMS_TTL_S = 1.0
"""How long which teams have router hosts is remembered (read once a second at most)."""


def spec_of(route: Route) -> dict[str, object]:
    """A route as stored for router hosts (DesiredRoute without its version)."""
    return {
        "key": route.key,
        "port": route.port,
        "preview_port": route.preview_port,
        "health": {
            "path": route.health.path,
            "interval_ms": route.health.interval_ms,
            "timeout_ms": route.health.timeout_ms,
            "fall": route.health.fall,
        },
        "canary_slot": route.canary_slot,
        "share_b": route.share_b,
        "servers": {
            slot: [
                {
                    "name": s.name,
                    "address": s.address,
                    "port": s.port,
                    "weight": s.weight,
                    "state": s.state.value,
                }
                for s in members
            ]
            for slot, members in sorted(route.servers.items())
        },
    }


def desired_route(record: route_rows.RouteRecord) -> DesiredRoute:
    return DesiredRoute.model_validate({**record.spec, "version": record.version})


class HostRouters:
    """Routes held by router hosts, through their agents (see the module's text)."""

    def __init__(
        self,
        db: Database,
        wake: Callable[[uuid.UUID], None] = lambda host_id: None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.wake = wake
        self.clock = clock
        self.monotonic = monotonic
        self._heard = asyncio.Event()
        self._teams: set[uuid.UUID] = set()
        self._teams_at = -math.inf

    def heard(self) -> None:
        """A router host's report arrived on this replica: whoever waits looks now."""
        self._heard.set()
        self._heard = asyncio.Event()

    async def teams(self) -> set[uuid.UUID]:
        """The teams whose fleet environments are routed by hosts (read at most once a
        second)."""
        if self.monotonic() - self._teams_at >= TEAMS_TTL_S:
            async with self.db.transaction() as session:
                self._teams = await route_rows.routed_teams(session)
            self._teams_at = self.monotonic()
        return self._teams

    def forget_teams(self) -> None:
        """A router host joined or left: read the teams afresh next time."""
        self._teams_at = -math.inf

    async def apply(self, route: Route, confirm: bool = True) -> None:
        """Store the route; once stored (`confirm`), wait until every router host that
        is up holds it (RouterError naming those that do not, after CONFIRM_S)."""
        assert route.team is not None
        async with self.db.transaction() as session:
            version, changed = await route_rows.put(
                session, route.team, route.key, spec_of(route), self.clock()
            )
            routers = await route_rows.router_hosts(session, route.team)
            if changed:
                await host_rows.changed(session, [r.id for r in routers])
        if changed:
            for router in routers:
                self.wake(router.id)
        deadline = self.monotonic() + CONFIRM_S
        while confirm:
            behind = _behind(routers, route.key, version)
            if not behind:
                return
            if self.monotonic() >= deadline:
                raise RouterError(
                    f"router host(s) {', '.join(behind)} have not taken version {version} "
                    f"of route {route.key} in {CONFIRM_S:g} s"
                )
            heard = self._heard
            try:
                await asyncio.wait_for(heard.wait(), CONFIRM_POLL_S)
            except TimeoutError:
                pass
            async with self.db.transaction() as session:
                routers = await route_rows.router_hosts(session, route.team)

    async def addresses(self, team_id: uuid.UUID) -> list[str]:
        """Where the team's router hosts that are up serve its environments."""
        async with self.db.transaction() as session:
            found = await route_rows.router_hosts(session, team_id)
        return [r.address for r in found if r.status is not HostState.LOST]

    async def status(self, key: str) -> dict[str, ServerStatus]:
        async with self.db.transaction() as session:
            record = await route_rows.route(session, key)
            if record is None:
                return {}
            routers = await route_rows.router_hosts(session, record.team_id)
        live = [r for r in routers if r.status is not HostState.LOST]
        if not live:
            raise RouterError(f"no router host of route {key}'s team is up")
        views: list[dict[str, ServerStatus]] = []
        for router in live:
            held = router.routing.get(key) or {}
            views.append({s["name"]: _status(s) for s in held.get("servers", [])})
        names = sorted({name for view in views for name in view})
        return {name: merge([view.get(name) for view in views]) for name in names}

    async def served(self, key: str, side: str, start: float, end: float) -> list[Served]:
        first, last = math.floor(start) - SAMPLE_LAG_S, math.floor(end) - SAMPLE_LAG_S
        async with self.db.transaction() as session:
            found = await route_rows.samples(session, key, side, first, last)
        out: list[Served] = []
        for sample in found:
            at = sample.second + 0.5
            statuses = [int(code) for code, n in sorted(sample.statuses.items()) for _ in range(n)]
            times = [bucket_ms(int(b)) for b, n in sorted(sample.latency.items()) for _ in range(n)]
            out.extend(
                Served(at, status, ms, sample.preview, sample.router)
                for status, ms in zip(statuses, times, strict=False)
            )
        return out

    async def prune(self) -> None:
        """Forget request summaries older than SAMPLES_KEPT_S."""
        before = int(self.clock().timestamp()) - SAMPLES_KEPT_S
        async with self.db.transaction() as session:
            await route_rows.prune(session, before)


def _behind(routers: list[route_rows.RouterHost], key: str, version: int) -> list[str]:
    """The up router hosts that do not hold `version` of the route yet (with the
    problem their agent reported, if any)."""
    out = []
    for r in routers:
        held = r.routing.get(key) or {}
        if r.status is HostState.LOST or int(held.get("version", 0)) >= version:
            continue
        out.append(f"{r.name} ({held['problem']})" if held.get("problem") else r.name)
    return out


def _status(server: dict[str, object]) -> ServerStatus:
    """A server as a router host reported it (an ObservedServer, stored as JSON)."""
    return ServerStatus(**ObservedServer.model_validate(server).model_dump())


def merge(parts: Sequence[ServerStatus | None]) -> ServerStatus:
    """One server as every router together sees it (None: a router that does not hold
    it yet). Healthy only when every router has it healthy; taking traffic when any may
    send it some; down when every router has it down."""
    present = [p for p in parts if p is not None]
    everywhere = len(present) == len(parts)
    sessions = sum(p.sessions for p in present)
    if everywhere and all(p.healthy for p in present):
        draining = all(p.status.startswith("DRAIN") for p in present)
        status, check, weight = (
            ("DRAIN" if draining else "UP"),
            "L7OK",
            min(p.weight for p in present),
        )
    elif everywhere and all(p.status.startswith("DOWN") for p in present):
        status, check, weight = "DOWN", present[0].check, min(p.weight for p in present)
    elif any(p.takes_traffic for p in present):
        worst = next((p.check for p in present if not p.healthy), "")
        status, check, weight = "NOLB", worst, max(p.weight for p in present)
    else:
        worst = next((p.check for p in present if not p.healthy), "")
        status, check, weight = "MAINT", worst, 0
    first = present[0]
    return ServerStatus(
        name=first.name,
        backend=first.backend,
        status=status,
        check=check,
        weight=weight,
        sessions=sessions,
        queued=sum(p.queued for p in present),
        requests=sum(p.requests for p in present),
        errors_5xx=sum(p.errors_5xx for p in present),
        since_s=min(p.since_s for p in present),
    )


class Routers:
    """The manager's TrafficRouter: a route with a team goes to that team's router
    hosts, any other to the coordinator's own router."""

    def __init__(self, local: TrafficRouter, hosts: HostRouters | None = None) -> None:
        self.local = local
        self.hosts = hosts
        self._on_hosts: set[str] = set()
        self._moved = False
        """A route moved between the coordinator's router and router hosts since the
        last sync: the coordinator's router needs its config written again."""

    def running(self) -> bool:
        return self.local.running() and not self._moved

    async def sync(self, routes: Sequence[Route]) -> None:
        held = [r for r in routes if r.team is not None and self.hosts is not None]
        self._on_hosts = {r.key for r in held}
        self._moved = False
        await self.local.sync([r for r in routes if r.key not in self._on_hosts])
        for route in held:  # stored; each environment's pass waits for its routers
            await self._hosts().apply(route, confirm=False)

    async def apply(self, route: Route, seen: Mapping[str, ServerStatus] | None = None) -> None:
        on_hosts = route.team is not None and self.hosts is not None
        if on_hosts != (route.key in self._on_hosts):
            self._moved = True  # the next pass syncs both
            (self._on_hosts.add if on_hosts else self._on_hosts.discard)(route.key)
        if on_hosts:
            await self._hosts().apply(route)
        else:
            await self.local.apply(route, seen)

    async def status(self, key: str) -> dict[str, ServerStatus]:
        if key in self._on_hosts:
            return await self._hosts().status(key)
        return await self.local.status(key)

    async def served(self, route: str, side: str, start: float, end: float) -> list[Served]:
        if route in self._on_hosts:
            return await self._hosts().served(route, side, start, end)
        return await self.local.served(route, side, start, end)

    async def stop(self) -> None:
        await self.local.stop()

    def _hosts(self) -> HostRouters:
        assert self.hosts is not None
        return self.hosts
