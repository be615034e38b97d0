"""The rows a deployment driver works on: an environment's lease and fencing token, what
one reconcile pass loads, the intent log, and instance moves guarded by
domain.deploy.INSTANCE_TRANSITIONS.

Every write of a driver runs in a transaction opened by `renew_lease` (through the
driver's `fenced` context), so a replica that lost the environment writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, func, select, update

from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.deploy import InstanceState, Phase, instance_sources
from conveyor.storage import analysis, policy
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import (
    AnalysisRunRecord,
    DeploymentRecord,
    EnvironmentRecord,
    InstanceRecord,
    IntentRecord,
    deployment_record,
    environment_record,
    instance_record,
    intent_record,
)
from conveyor.storage.policy import FreezeRecord
from conveyor.storage.tables import (
    Deployment,
    DeploymentAction,
    Environment,
    Instance,
    RevisionPin,
)

ACTIVE_PHASES = (Phase.PENDING.value, Phase.PROGRESSING.value, Phase.PAUSED.value)
STOPPED_KEPT_S = 60
"""A stopped instance is still loaded this long, so that a pass can kill one that ignored
SIGTERM."""


class InstanceMoveRejected(Exception):
    """The instance was not in a state that allows the move."""


# -- leases ----------------------------------------------------------------------------


async def claim_free(
    session: Session, owner: str, lease_s: float, targets: tuple[str, ...] = ("local", "fleet")
) -> list[tuple[uuid.UUID, int]]:
    """Take every environment of `targets` whose lease is free or has run out: one UPDATE
    that bumps each one's fencing token. Returns (environment, new fence) pairs."""
    now = utcnow()
    rows = await session.execute(
        update(Environment)
        .where(
            Environment.target.in_(targets),
            (Environment.lease_until.is_(None)) | (Environment.lease_until < now),
        )
        .values(
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_s),
            fence=Environment.fence + 1,
        )
        .returning(Environment.id, Environment.fence)
    )
    return [(env_id, fence) for env_id, fence in rows.all()]


def _renewal(env_id: uuid.UUID, fence: int, owner: str, lease_s: float) -> Update:
    """The UPDATE that extends `owner`'s lease under `fence`."""
    return (
        update(Environment)
        .where(
            Environment.id == env_id,
            Environment.fence == fence,
            Environment.lease_owner == owner,
        )
        .values(lease_until=utcnow() + timedelta(seconds=lease_s))
    )


async def renew_lease(
    session: Session, env_id: uuid.UUID, fence: int, owner: str, lease_s: float
) -> bool:
    """Extend `owner`'s lease under `fence` (holding the row until the transaction ends);
    False when another replica has taken the environment."""
    renewed = await session.execute(_renewal(env_id, fence, owner, lease_s))
    return bool(renewed.rowcount == 1)  # type: ignore[attr-defined]


async def renew_leases(
    session: Session, owner: str, env_ids: Sequence[uuid.UUID], lease_s: float
) -> int:
    """Extend `owner`'s lease on each of `env_ids` it still holds, in one statement (the
    drivers' own passes renew under their fence; this keeps a lease whose driver waits
    between passes from running out under it). Returns how many were extended."""
    if not env_ids:
        return 0
    renewed = await session.execute(
        update(Environment)
        .where(Environment.lease_owner == owner, Environment.id.in_(env_ids))
        .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return int(renewed.rowcount)  # type: ignore[attr-defined]


async def renew_lease_quietly(
    session: Session, env_id: uuid.UUID, fence: int, owner: str, lease_s: float
) -> int | None:
    """`renew_lease` for a settled environment, in one statement: its `changes` (None when
    another replica has taken it)."""
    renewed = await session.execute(
        _renewal(env_id, fence, owner, lease_s).returning(Environment.changes)
    )
    changes = renewed.scalar_one_or_none()
    return None if changes is None else int(changes)


# -- what a pass loads -----------------------------------------------------------------


@dataclass
class EnvironmentRows:
    """What one reconcile pass loaded of an environment."""

    env: EnvironmentRecord
    active: DeploymentRecord | None
    """The deployment in progress or paused, if any."""
    instances: list[InstanceRecord]
    """Every live instance, and those stopped in the last STOPPED_KEPT_S."""
    pending: tuple[int, ...]
    """The numbers of the queued deployments, oldest first."""
    pinned: frozenset[str]
    """Digests pinned as bad."""
    open_intent: IntentRecord | None
    """The last action recorded but not marked done (a driver died in it)."""
    analyses: list[AnalysisRunRecord] = field(default_factory=list)
    """The analysis runs of the active deployment."""
    stopped: bool = False
    """The company's stop-the-line switch is on (read only with an active deployment)."""
    freezes: list[FreezeRecord] = field(default_factory=list)
    """The freeze windows over the environment (read only while a deployment waits at
    its gate)."""
    first_pending: DeploymentRecord | None = None
    """The deployment queued next (its gate decides whether it begins released)."""


async def load(session: Session, env_id: uuid.UUID) -> EnvironmentRows:
    found = await session.get(Environment, env_id, populate_existing=True)
    assert found is not None, "a driven environment is never deleted"
    env = environment_record(found)
    rows = [
        deployment_record(row)
        for row in await session.scalars(
            select(Deployment)
            .where(Deployment.environment_id == env_id, Deployment.phase.in_(ACTIVE_PHASES))
            .order_by(Deployment.number)
        )
    ]
    instances = [
        instance_record(row)
        for row in await session.scalars(
            select(Instance)
            .where(
                Instance.environment_id == env_id,
                (Instance.state != InstanceState.STOPPED.value)
                | (Instance.stopped_at > utcnow() - timedelta(seconds=STOPPED_KEPT_S)),
            )
            .order_by(Instance.created_at)
        )
    ]
    pins = await session.scalars(
        select(RevisionPin.digest).where(
            RevisionPin.environment_id == env_id, RevisionPin.cleared_at.is_(None)
        )
    )
    intent = await session.scalar(
        select(DeploymentAction)
        .where(DeploymentAction.environment_id == env_id, DeploymentAction.done.is_(False))
        .order_by(DeploymentAction.seq.desc())
        .limit(1)
    )
    active = next((r for r in rows if Phase(r.phase).is_active), None)
    first = next((r for r in rows if r.phase == Phase.PENDING.value), None)
    stopped, freezes = False, []
    if active is not None or first is not None:
        stopped = await policy.is_on(session)
        waiting = active or first
        if waiting is not None and waiting.released_at is None:
            freezes = await policy.windows_over(session, env)
    return EnvironmentRows(
        env=env,
        active=active,
        instances=instances,
        pending=tuple(r.number for r in rows if r.phase == Phase.PENDING.value),
        pinned=frozenset(pins),
        open_intent=intent_record(intent) if intent is not None else None,
        analyses=await analysis.runs(session, [active.id]) if active is not None else [],
        stopped=stopped,
        freezes=freezes,
        first_pending=first,
    )


@dataclass(frozen=True)
class RouteRows:
    """One environment with its live instances, and, before its first stable revision,
    the runtime of the deployment in progress (its health checks come from there)."""

    env: EnvironmentRecord
    instances: list[InstanceRecord]
    first_runtime: dict[str, Any] | None


async def route_rows(
    session: Session, targets: tuple[str, ...] = ("local", "fleet")
) -> list[RouteRows]:
    """Every environment of `targets` with its live instances: the router's whole
    config, in three queries."""
    envs = list(await session.scalars(select(Environment).where(Environment.target.in_(targets))))
    live = list(
        await session.scalars(
            select(Instance).where(
                Instance.environment_id.in_([e.id for e in envs]),
                Instance.state != InstanceState.STOPPED.value,
            )
        )
    )
    first = [e.id for e in envs if e.runtime is None]
    runtimes: dict[uuid.UUID, dict[str, Any]] = {}
    for env_id, runtime in (
        await session.execute(
            select(Deployment.environment_id, Deployment.runtime)
            .where(Deployment.environment_id.in_(first), Deployment.phase.in_(ACTIVE_PHASES))
            .order_by(Deployment.number.desc())  # the oldest (the one in progress) wins
        )
    ).all():
        runtimes[env_id] = runtime
    return [
        RouteRows(
            environment_record(env),
            [instance_record(i) for i in live if i.environment_id == env.id],
            runtimes.get(env.id),
        )
        for env in envs
    ]


# -- the intent log --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One action of an environment's driver, as its timeline shows it."""

    seq: int
    action: str
    params: dict[str, Any]
    driver: str
    done: bool
    started_at: datetime
    done_at: datetime | None


async def actions(
    session: Session, env_id: uuid.UUID, limit: int = 50, before: int | None = None
) -> list[ActionRecord]:
    """The environment's latest driver actions (those before `seq` `before`, when given),
    newest first: its timeline, a page at a time."""
    query = select(DeploymentAction).where(DeploymentAction.environment_id == env_id)
    if before is not None:
        query = query.where(DeploymentAction.seq < before)
    rows = await session.scalars(query.order_by(DeploymentAction.seq.desc()).limit(limit))
    return [
        ActionRecord(
            seq=row.seq,
            action=row.action,
            params=dict(row.params),
            driver=row.driver,
            done=row.done,
            started_at=as_utc(row.started_at),
            done_at=as_utc(row.done_at) if row.done_at else None,
        )
        for row in rows
    ]


async def record_intent(
    session: Session,
    env_id: uuid.UUID,
    deployment_id: uuid.UUID | None,
    act: str,
    params: Mapping[str, object],
    *,
    fence: int,
    driver: str,
) -> uuid.UUID:
    """The next action of the environment's log, not done yet (its id)."""
    seq = await session.scalar(
        select(func.coalesce(func.max(DeploymentAction.seq), 0)).where(
            DeploymentAction.environment_id == env_id
        )
    )
    row = DeploymentAction(
        environment_id=env_id,
        deployment_id=deployment_id,
        seq=int(seq or 0) + 1,
        action=act,
        params={"act": act, **params},
        fence=fence,
        driver=driver,
    )
    session.add(row)
    await session.flush()
    return row.id


async def mark_done(session: Session, intent_id: uuid.UUID) -> None:
    await session.execute(
        update(DeploymentAction)
        .where(DeploymentAction.id == intent_id)
        .values(done=True, done_at=utcnow())
    )


async def record_states(
    session: Session,
    deployment_id: uuid.UUID,
    desired: dict[str, object],
    observed: dict[str, object],
) -> None:
    """What the deployment wants and what its driver saw, at its latest action."""
    await session.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id)
        .values(desired=desired, observed=observed)
    )


# -- the environment's routing ---------------------------------------------------------


async def set_canary_share(session: Session, env_id: uuid.UUID, share: int) -> None:
    await session.execute(
        update(Environment).where(Environment.id == env_id).values(canary_share=share)
    )


async def make_stable(
    session: Session,
    env_id: uuid.UUID,
    revision: int,
    digest: str,
    runtime: dict[str, Any],
    *,
    new_slot: str | None = None,
    warm_digest: str | None = None,
    warm_until: datetime | None = None,
) -> None:
    """Revision `revision` becomes the environment's stable one (a redo changes nothing).
    With `new_slot`, the slots are relabelled and the old stable revision stays warm
    until `warm_until`."""
    values: dict[str, Any] = {"revision": revision, "digest": digest, "runtime": runtime}
    if new_slot is not None:
        values |= {
            "stable_slot": new_slot,
            "canary_share": 0,
            "warm_digest": warm_digest,
            "warm_until": warm_until,
        }
    await session.execute(
        update(Environment)
        .where(Environment.id == env_id, Environment.revision != revision)
        .values(values)
    )


# -- instances -------------------------------------------------------------------------


async def instance(session: Session, instance_id: uuid.UUID) -> InstanceRecord | None:
    found = await session.get(Instance, instance_id, populate_existing=True)
    return instance_record(found) if found is not None else None


def add_instance(
    session: Session,
    *,
    instance_id: uuid.UUID,
    environment_id: uuid.UUID,
    deployment_id: uuid.UUID | None,
    revision: int,
    digest: str,
    slot: str,
    port: int,
    host_id: uuid.UUID | None = None,
    address: str | None = None,
    launch: dict[str, Any] | None = None,
) -> None:
    """A new instance, written with the intent that starts it; its server's name in the
    router is `i` and the random tail of its UUIDv7. On a fleet's host: the host, its
    address and what its agent starts."""
    session.add(
        Instance(
            id=instance_id,
            environment_id=environment_id,
            deployment_id=deployment_id,
            revision=revision,
            digest=digest,
            slot=slot,
            server="i" + instance_id.hex[-12:],
            port=port,
            host_id=host_id,
            address=address,
            launch=launch,
        )
    )


async def set_process(
    session: Session, instance_id: uuid.UUID, pid: int, started: str, **values: Any
) -> None:
    """Where the instance's process is (pid and start time), and when it started."""
    await session.execute(
        update(Instance)
        .where(Instance.id == instance_id)
        .values(pid=pid, pid_started=started, started_at=utcnow(), **values)
    )


async def set_started(session: Session, instance_id: uuid.UUID) -> None:
    """Its new process starts now (on a fleet's host, by its agent)."""
    await session.execute(
        update(Instance)
        .where(Instance.id == instance_id)
        .values(started_at=utcnow(), health_failures=0)
    )


async def move_instance(
    session: Session,
    instance_id: uuid.UUID,
    target: InstanceState,
    *,
    strict: bool = False,
    **values: Any,
) -> bool:
    """Move an instance to `target` in one UPDATE guarded by INSTANCE_TRANSITIONS, so
    that a redo changes nothing. False when it was not in such a state;
    InstanceMoveRejected instead when `strict`."""
    allowed = instance_sources(target)
    moved = await session.execute(
        update(Instance)
        .where(Instance.id == instance_id, Instance.state.in_([s.value for s in allowed]))
        .values(state=target.value, **values)
    )
    if moved.rowcount == 1:  # type: ignore[attr-defined]
        return True
    if strict:
        raise InstanceMoveRejected(f"instance {instance_id} cannot move to {target}")
    return False


async def count_failures(session: Session, failures: Mapping[uuid.UUID, int]) -> None:
    """The health-probe failures counted this pass, per instance."""
    for instance_id, count in failures.items():
        await session.execute(
            update(Instance).where(Instance.id == instance_id).values(health_failures=count)
        )


async def restart_counted(session: Session, instance_id: uuid.UUID) -> None:
    """Out of the router, back to starting, one restart more."""
    await move_instance(
        session, instance_id, InstanceState.STARTING, restarts=Instance.restarts + 1
    )
