"""Routing held by router hosts: each environment's route for its team's router hosts
(a version raised by every change), what each router host reports holding (hosts.routing),
and the per-second request summaries the routers report for the analysis."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from conveyor.domain.hosts import LOCAL_POOL, HostState, state_of
from conveyor.ids import new_id
from conveyor.storage.database import Session
from conveyor.storage.hosts import serving
from conveyor.storage.tables import Host, PoolShare, RouterSample, Routing, Team


@dataclass(frozen=True, slots=True)
class RouteRecord:
    key: str
    team_id: uuid.UUID
    version: int
    spec: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RouterHost:
    """A router host that serves a team, and the routes it last reported holding."""

    id: uuid.UUID
    name: str
    address: str
    status: HostState
    routing: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sample:
    """One router's requests of one backend in one second (protocol.agent.ServedSecond)."""

    key: str
    side: str
    preview: bool
    second: int
    statuses: dict[str, int]
    latency: dict[str, int]
    router: str = ""
    """The router host's name (as read back; a report's own samples leave it out)."""


async def put(
    session: Session, team_id: uuid.UUID, key: str, spec: dict[str, Any], now: datetime
) -> tuple[int, bool]:
    """Store the route; its version, and whether this changed it (a new version)."""
    found = await session.scalar(
        select(Routing).where(Routing.key == key).execution_options(populate_existing=True)
    )
    if found is None:
        await session.execute(
            insert(Routing).values(key=key, team_id=team_id, version=1, spec=spec, updated_at=now)
        )
        return 1, True
    if found.spec == spec and found.team_id == team_id:
        return found.version, False
    version = found.version + 1
    await session.execute(
        update(Routing)
        .where(Routing.key == key)
        .values(team_id=team_id, version=version, spec=spec, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return version, True


async def route(session: Session, key: str) -> RouteRecord | None:
    found = await session.scalar(
        select(Routing).where(Routing.key == key).execution_options(populate_existing=True)
    )
    if found is None:
        return None
    return RouteRecord(found.key, found.team_id, found.version, dict(found.spec))


async def drop(session: Session, keys: list[str]) -> None:
    """Forget routes no environment has any more."""
    if keys:
        await session.execute(delete(Routing).where(Routing.key.in_(keys)))


async def routed_teams(session: Session) -> set[uuid.UUID]:
    """The teams whose fleet environments are routed by hosts: those with a router host
    of their own or in a pool shared with them (whatever its state: a team whose routers
    are all lost waits for them rather than moving its traffic)."""
    own = await session.scalars(
        select(Host.team_id).where(Host.router.is_(True), Host.team_id.is_not(None)).distinct()
    )
    pooled = await session.scalars(
        select(PoolShare.team_id)
        .join(Host, Host.pool == PoolShare.pool)
        .where(Host.router.is_(True))
        .distinct()
    )
    local = await session.scalar(
        select(Host.id).where(Host.router.is_(True), Host.pool == LOCAL_POOL).limit(1)
    )
    every = set(await session.scalars(select(Team.id))) if local is not None else set()
    return {t for t in own if t is not None} | set(pooled) | every


async def router_hosts(session: Session, team_id: uuid.UUID) -> list[RouterHost]:
    """The router hosts that serve the team, by name."""
    found = await session.execute(
        select(Host.id, Host.name, Host.address, Host.state, Host.draining, Host.routing)
        .where(Host.router.is_(True), serving([team_id]))
        .order_by(Host.name)
    )
    return [
        RouterHost(host_id, name, address, state_of(state, draining), dict(routing or {}))
        for host_id, name, address, state, draining, routing in found
    ]


async def for_host(session: Session, team_ids: list[uuid.UUID]) -> list[RouteRecord]:
    """Every route of these teams (the ones a router host serves), by key."""
    if not team_ids:
        return []
    found = await session.scalars(
        select(Routing).where(Routing.team_id.in_(team_ids)).order_by(Routing.key)
    )
    return [RouteRecord(r.key, r.team_id, r.version, dict(r.spec)) for r in found]


async def held(session: Session, host_id: uuid.UUID, routing: dict[str, Any]) -> None:
    """What the router host reports holding now."""
    await session.execute(
        update(Host)
        .where(Host.id == host_id)
        .values(routing=routing)
        .execution_options(synchronize_session=False)
    )


async def add_samples(session: Session, host_id: uuid.UUID, samples: list[Sample]) -> None:
    if samples:
        await session.execute(
            insert(RouterSample),
            [
                {
                    "id": new_id(),
                    "host_id": host_id,
                    "key": s.key,
                    "side": s.side,
                    "preview": s.preview,
                    "second": s.second,
                    "statuses": s.statuses,
                    "latency": s.latency,
                }
                for s in samples
            ],
        )


async def samples(session: Session, key: str, side: str, first: int, end: int) -> list[Sample]:
    """Every router's samples of the backend for the seconds in [first, end)."""
    found = await session.execute(
        select(RouterSample, Host.name)
        .join(Host, Host.id == RouterSample.host_id)
        .where(
            RouterSample.key == key,
            RouterSample.side == side,
            RouterSample.second >= first,
            RouterSample.second < end,
        )
        .order_by(RouterSample.second)
    )
    return [
        Sample(r.key, r.side, r.preview, r.second, dict(r.statuses), dict(r.latency), name)
        for r, name in found
    ]


async def prune(session: Session, before: int) -> None:
    """Forget samples of the seconds before `before`."""
    await session.execute(delete(RouterSample).where(RouterSample.second < before))
