"""Hosts of the fleet and the tokens their agents register with: registration (which
raises the host's fence), the lease an agent renews with one statement per call, the
sweep that marks hosts whose lease ran out as lost, drains, and the shared pools the
admin opens to teams (docs/states.md, "Hosts")."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.domain.deploy import InstanceState
from conveyor.domain.errors import Conflict
from conveyor.domain.hosts import LOCAL_POOL, HostState, state_of
from conveyor.storage.artifacts import ArtifactRecord, artifact_of
from conveyor.storage.database import Session, insert_for
from conveyor.storage.deployment_records import InstanceRecord, instance_record
from conveyor.storage.tables import (
    Artifact,
    Environment,
    Host,
    HostToken,
    Instance,
    PoolShare,
    Team,
)
from conveyor.storage.values import record_of


@dataclass(frozen=True, slots=True)
class HostTokenRecord:
    """A host token (never the token: only its sha256 is stored)."""

    id: uuid.UUID
    team_id: uuid.UUID | None
    pool: str | None
    name: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class HostRecord:
    id: uuid.UUID
    team_id: uuid.UUID | None
    pool: str | None
    token_id: uuid.UUID
    name: str
    address: str
    labels: dict[str, Any]
    slots: int | None
    memory: int | None
    router: bool
    version: str
    state: str
    draining: bool
    fence: int
    generation: int
    lease_until: datetime
    seen_at: datetime
    registered_at: datetime
    created_at: datetime

    @property
    def status(self) -> HostState:
        """Lost while its lease has run out; else draining when asked to; else up."""
        return state_of(self.state, self.draining)


@dataclass(frozen=True, slots=True)
class Joining:
    """What an agent says of its host when it registers."""

    name: str
    address: str
    labels: dict[str, str]
    slots: int | None
    memory: int | None
    router: bool
    version: str


@dataclass(frozen=True, slots=True)
class Lease:
    """A renewed lease: what the host should run has this generation."""

    generation: int
    draining: bool
    router: bool


# -- tokens ----------------------------------------------------------------------------


async def add_token(
    session: Session,
    team_id: uuid.UUID | None,
    pool: str | None,
    name: str,
    digest: str,
    who: str,
) -> HostTokenRecord:
    row = HostToken(team_id=team_id, pool=pool, name=name, token_hash=digest, created_by=who)
    session.add(row)
    await session.flush()
    return record_of(HostTokenRecord, row)


async def token(session: Session, digest: str) -> HostTokenRecord | None:
    """The token with this sha256, revoked or not."""
    found = await session.scalar(select(HostToken).where(HostToken.token_hash == digest))
    return record_of(HostTokenRecord, found) if found is not None else None


async def token_by_id(session: Session, token_id: uuid.UUID) -> HostTokenRecord | None:
    found = await session.get(HostToken, token_id)
    return record_of(HostTokenRecord, found) if found is not None else None


async def tokens(session: Session, team_ids: list[uuid.UUID] | None) -> list[HostTokenRecord]:
    """The tokens of these teams (None: every token, the pools' too), newest first."""
    query = select(HostToken).order_by(HostToken.created_at.desc())
    if team_ids is not None:
        query = query.where(HostToken.team_id.in_(team_ids))
    return [record_of(HostTokenRecord, row) for row in await session.scalars(query)]


async def revoke_named(session: Session, pool: str, name: str, at: datetime) -> None:
    """Revoke the pool's tokens of this name that are not revoked yet."""
    await session.execute(
        update(HostToken)
        .where(HostToken.pool == pool, HostToken.name == name, HostToken.revoked_at.is_(None))
        .values(revoked_at=at)
    )


async def revoke_token(session: Session, token_id: uuid.UUID, at: datetime) -> bool:
    """Revoke it (once); whether this call did."""
    result = await session.execute(
        update(HostToken)
        .where(HostToken.id == token_id, HostToken.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# -- registration and leases -----------------------------------------------------------


async def register(
    session: Session, grant: HostTokenRecord, joining: Joining, lease_s: float, now: datetime
) -> tuple[HostRecord, bool]:
    """The host `joining` names, registered with `grant`: a new row, or the existing
    one (of the same team or pool) with a raised fence, so that an older agent of this
    host is refused from now on. Returns it and whether it is new."""
    values: dict[str, Any] = {
        "address": joining.address,
        "labels": joining.labels,
        "slots": joining.slots,
        "memory": joining.memory,
        "router": joining.router,
        "version": joining.version,
        "token_id": grant.id,
        "state": HostState.UP.value,
        "lease_until": now + timedelta(seconds=lease_s),
        "seen_at": now,
        "registered_at": now,
        "routing": None,  # a router host holds nothing it has not reported since joining
    }
    moved = await session.execute(
        update(Host)
        .where(
            Host.name == joining.name,
            _same_owner(grant.team_id, grant.pool),
        )
        .values(fence=Host.fence + 1, generation=Host.generation + 1, **values)
        .returning(Host.id)
    )
    if moved.first() is None:
        if await session.scalar(select(Host.id).where(Host.name == joining.name)) is not None:
            raise Conflict(
                f"a host named {joining.name!r} is registered by another team or pool: "
                "pick another name (--name)"
            )
        try:
            async with session.begin_nested():
                row = Host(team_id=grant.team_id, pool=grant.pool, name=joining.name, **values)
                session.add(row)
        except IntegrityError as exc:  # another registration of this name won the race
            raise Conflict(f"host {joining.name!r} registered twice at once: retry") from exc
        return record_of(HostRecord, row), True
    found = await host_named(session, joining.name)
    assert found is not None
    return found, False


def _same_owner(team_id: uuid.UUID | None, pool: str | None) -> Any:
    if team_id is not None:
        return Host.team_id == team_id
    return (Host.team_id.is_(None)) & (Host.pool == pool)


async def renew(
    session: Session,
    host_id: uuid.UUID,
    fence: int,
    digest: str,
    lease_s: float,
    now: datetime,
) -> Lease | None:
    """Renew the host's lease: one statement, which also checks that the agent's token
    is not revoked and that its fence is the host's. None when either is not so (`why`
    says which)."""
    granted = select(HostToken.id).where(
        HostToken.token_hash == digest, HostToken.revoked_at.is_(None)
    )
    renewed = await session.execute(
        update(Host)
        .where(
            Host.id == host_id,
            Host.fence == fence,
            Host.state == HostState.UP.value,
            Host.token_id.in_(granted.scalar_subquery()),
        )
        .values(lease_until=now + timedelta(seconds=lease_s), seen_at=now)
        .returning(Host.generation, Host.draining, Host.router)
    )
    row = renewed.first()
    return Lease(int(row[0]), bool(row[1]), bool(row[2])) if row is not None else None


async def why(session: Session, host_id: uuid.UUID, fence: int, digest: str) -> str:
    """Why `renew` refused: `revoked` (or an unknown token or host), or `fenced`."""
    found = await session.execute(
        select(Host.fence, Host.state, HostToken.revoked_at, HostToken.token_hash)
        .join(HostToken, HostToken.id == Host.token_id)
        .where(Host.id == host_id)
    )
    row = found.first()
    if row is None or row.token_hash != digest or row.revoked_at is not None:
        return "revoked"
    return "fenced"


async def sweep(session: Session, now: datetime) -> list[HostRecord]:
    """Every host whose lease ran out becomes lost, with its fence raised (its agent
    must register again) and its generation raised (what it should run changes).
    Returns them as they are now."""
    return await _moved(
        session,
        update(Host)
        .where(Host.state == HostState.UP.value, Host.lease_until < now)
        .values(state=HostState.LOST.value, fence=Host.fence + 1, generation=Host.generation + 1),
    )


async def _moved(session: Session, moving: Any) -> list[HostRecord]:
    """Run an UPDATE of hosts; the hosts it moved, as they are now, by name."""
    moved = await session.execute(
        moving.returning(Host.id).execution_options(synchronize_session=False)
    )
    ids = [row[0] for row in moved]
    if not ids:
        return []
    found = await session.scalars(select(Host).where(Host.id.in_(ids)).order_by(Host.name))
    return [record_of(HostRecord, row) for row in found]


async def held(session: Session, host_id: uuid.UUID, fence: int, digest: str) -> HostRecord | None:
    """The host, if the caller holds its token (not revoked) and its current fence."""
    found = await session.scalar(
        select(Host)
        .join(HostToken, HostToken.id == Host.token_id)
        .where(
            Host.id == host_id,
            Host.fence == fence,
            HostToken.token_hash == digest,
            HostToken.revoked_at.is_(None),
        )
    )
    return record_of(HostRecord, found) if found is not None else None


async def served_teams(session: Session, host: HostRecord) -> list[uuid.UUID]:
    """The teams whose environments may run on the host: its team, or the teams its
    pool is shared with."""
    if host.team_id is not None:
        return [host.team_id]
    if host.pool == LOCAL_POOL:
        return list(await session.scalars(select(Team.id)))
    found = await session.scalars(select(PoolShare.team_id).where(PoolShare.pool == host.pool))
    return list(found)


async def told(session: Session, host: HostRecord) -> list[uuid.UUID]:
    """The teams told of the host's events: those it serves; for a coordinator's own
    machine (LOCAL_POOL, which serves every team), those whose instances run on it."""
    if host.pool != LOCAL_POOL:
        return await served_teams(session, host)
    found = await session.scalars(
        select(Environment.team_id)
        .join(Instance, Instance.environment_id == Environment.id)
        .where(Instance.host_id == host.id, Instance.state != InstanceState.STOPPED.value)
        .distinct()
    )
    return list(found)


async def artifact_for(session: Session, host: HostRecord, digest: str) -> ArtifactRecord | None:
    """An artifact with this digest of a team the host serves."""
    found = await session.scalar(
        select(Artifact)
        .where(Artifact.digest == digest, Artifact.team_id.in_(await served_teams(session, host)))
        .order_by(Artifact.created_at)
        .limit(1)
    )
    return artifact_of(found) if found is not None else None


# -- what hosts run --------------------------------------------------------------------


def serving(team_ids: list[uuid.UUID]) -> Any:
    """Hosts that serve one of these teams: their own, those of a pool shared with one
    of them, and the coordinators' own machines (LOCAL_POOL, shared with every team)."""
    shared = select(PoolShare.pool).where(PoolShare.team_id.in_(team_ids))
    return or_(
        Host.team_id.in_(team_ids),
        Host.pool.in_(shared.scalar_subquery()),
        Host.pool == LOCAL_POOL,
    )


async def desired_instances(session: Session, host_id: uuid.UUID) -> list[InstanceRecord]:
    """The instances the host should run: placed on it and not stopped."""
    found = await session.scalars(
        select(Instance)
        .where(Instance.host_id == host_id, Instance.state != InstanceState.STOPPED.value)
        .order_by(Instance.created_at, Instance.id)
    )
    return [instance_record(row) for row in found]


@dataclass(frozen=True, slots=True)
class Usage:
    """A host a team's instances may be placed on, and what it runs now (every team's
    instances that are not stopped)."""

    host: HostRecord
    instances: int
    memory: int
    ports: frozenset[int]


async def usable(session: Session, team_id: uuid.UUID) -> list[Usage]:
    """The hosts a team's environments may run on (its own, and those of the pools shared
    with it), each with what it runs now, by name."""
    found = list(await session.scalars(select(Host).where(serving([team_id])).order_by(Host.name)))
    running = await session.execute(
        select(Instance.host_id, Instance.port, Instance.launch).where(
            Instance.host_id.in_([h.id for h in found]),
            Instance.state != InstanceState.STOPPED.value,
        )
    )
    counts: dict[uuid.UUID, list[tuple[int, int]]] = {}
    for host_id, port, launch in running:
        counts.setdefault(host_id, []).append((port, int((launch or {}).get("memory") or 0)))
    usage = []
    for row in found:
        taken = counts.get(row.id, [])
        usage.append(
            Usage(
                record_of(HostRecord, row),
                len(taken),
                sum(memory for _, memory in taken),
                frozenset(port for port, _ in taken),
            )
        )
    return usage


async def states(session: Session, host_ids: set[uuid.UUID]) -> dict[uuid.UUID, HostState]:
    """Each existing host's state (a removed host is not in the answer)."""
    found = await session.execute(
        select(Host.id, Host.state, Host.draining).where(Host.id.in_(host_ids))
    )
    return {host_id: state_of(state, draining) for host_id, state, draining in found}


async def changed(session: Session, host_ids: list[uuid.UUID]) -> None:
    """What these hosts should run changed: their agents' long polls answer now."""
    if host_ids:
        await session.execute(
            update(Host)
            .where(Host.id.in_(host_ids))
            .values(generation=Host.generation + 1)
            .execution_options(synchronize_session=False)
        )


async def observed(
    session: Session, host_id: uuid.UUID, reports: dict[uuid.UUID, dict[str, Any]], at: datetime
) -> None:
    """Keep what the host's agent reported of its instances (only of instances placed
    on it): one statement, executed for each."""
    if not reports:
        return
    table = cast(Table, Instance.__table__)
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("instance"), table.c.host_id == host_id)
        .values(observed=bindparam("report"), observed_at=at),
        [{"instance": key, "report": value} for key, value in reports.items()],
    )


# -- reading and managing hosts --------------------------------------------------------


async def host(session: Session, host_id: uuid.UUID) -> HostRecord | None:
    found = await session.get(Host, host_id, populate_existing=True)
    return record_of(HostRecord, found) if found is not None else None


async def host_named(session: Session, name: str) -> HostRecord | None:
    found = await session.scalar(
        select(Host).where(Host.name == name).execution_options(populate_existing=True)
    )
    return record_of(HostRecord, found) if found is not None else None


async def hosts(session: Session, team_ids: list[uuid.UUID] | None) -> list[HostRecord]:
    """The hosts these teams may see: their own and those of pools shared with them
    (None: every host), by name."""
    query = select(Host).order_by(Host.name)
    if team_ids is not None:
        query = query.where(serving(team_ids))
    return [record_of(HostRecord, row) for row in await session.scalars(query)]


async def set_draining(session: Session, host_id: uuid.UUID, draining: bool) -> bool:
    """Drain it (or stop draining it); whether that changed anything. Raises the
    generation, so that its agent hears of it at once."""
    result = await session.execute(
        update(Host)
        .where(Host.id == host_id, Host.draining != draining)
        .values(draining=draining, drained_at=None, generation=Host.generation + 1)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def drained(session: Session, now: datetime) -> list[HostRecord]:
    """Every draining host found running nothing for the first time since its drain
    began (marked, so that each drain is told of once)."""
    running = select(Instance.id).where(
        Instance.host_id == Host.id, Instance.state != InstanceState.STOPPED.value
    )
    return await _moved(
        session,
        update(Host)
        .where(Host.draining.is_(True), Host.drained_at.is_(None), ~running.exists())
        .values(drained_at=now),
    )


async def remove(session: Session, host_id: uuid.UUID) -> None:
    await session.execute(delete(Host).where(Host.id == host_id))


async def share_pool(session: Session, pool: str, team_id: uuid.UUID) -> None:
    await session.execute(
        insert_for(session)(PoolShare).values(pool=pool, team_id=team_id).on_conflict_do_nothing()
    )


async def shared_with(session: Session, pool: str, team_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(PoolShare.pool).where(PoolShare.pool == pool, PoolShare.team_id == team_id)
    )
    return found is not None


async def unshare_pool(session: Session, pool: str, team_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(PoolShare).where(PoolShare.pool == pool, PoolShare.team_id == team_id)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
