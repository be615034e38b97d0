"""What each planner action does: one handler per action (STYLE.md: dispatch with an
explicit dict). Each handler is idempotent, since a new driver repeats an intent whose
`done` it cannot see, and writes only inside the fenced transaction that marks it done."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import Executable

from conveyor.deploy.strategies import Act
from conveyor.deploy.targets.base import Handle, Launch
from conveyor.domain.deploy import PHASE_TRANSITIONS, InstanceState, Phase, Request
from conveyor.storage.tables import (
    Deployment,
    DeploymentAction,
    Environment,
    Instance,
    RevisionPin,
    utcnow,
)

if TYPE_CHECKING:
    from conveyor.deploy.manager import DeploymentManager, Effect

AfterRoute = Callable[[], None] | None
"""What a handler leaves to do once the router holds the new rows (stop: SIGTERM)."""
Handler = Callable[["DeploymentManager", "Effect"], Awaitable[AfterRoute]]
CHANGES_ROUTES = frozenset({Act.READY, Act.DRAIN, Act.STOP, Act.RESTART, Act.SPLIT, Act.PROMOTE})
"""Actions after which the router's config file is rewritten (not reloaded), so that a
reload or restart of the router comes back with the current routing."""


class ArtifactGone(Exception):
    """The artifact's blob is no longer in the store."""


async def _record(manager: DeploymentManager, effect: Effect, statement: Executable) -> None:
    """The action's one write and its `done` mark, in one fenced transaction."""
    async with manager.fenced(effect.env_id, effect.fence) as session:
        await session.execute(statement)
        await _done(session, effect)


async def _done(session: AsyncSession, effect: Effect) -> None:
    await session.execute(
        update(DeploymentAction)
        .where(DeploymentAction.id == effect.intent_id)
        .values(done=True, done_at=utcnow())
    )


def _from(*phases: Phase) -> list[str]:
    """The phases a deployment may leave for `target`, for guarded updates."""
    return [p.value for p in phases]


def _may_become(target: Phase) -> list[str]:
    return [p.value for p, allowed in PHASE_TRANSITIONS.items() if target in allowed]


def runtime_for(effect: Effect, digest: str) -> dict[str, Any]:
    plan = effect.driven.plan_row
    if plan is not None and plan.digest == digest:
        return plan.runtime
    return effect.driven.env.runtime or (plan.runtime if plan is not None else {})


async def _launch(manager: DeploymentManager, effect: Effect, row: Instance) -> Handle:
    blob = manager.blobs.local_path(row.digest)
    if blob is None:
        raise ArtifactGone(f"artifact {row.digest} is not in the store")
    release = await asyncio.to_thread(manager.target.prepare, row.digest, blob)
    runtime = runtime_for(effect, row.digest)
    launch = Launch(
        instance=str(row.id),
        release=release,
        command=str(runtime["command"]),
        port=row.port,
        env={str(k): str(v) for k, v in dict(runtime.get("env", {})).items()},
    )
    return await asyncio.to_thread(manager.target.start, launch)


async def start(manager: DeploymentManager, effect: Effect) -> None:
    instance_id = uuid.UUID(str(effect.params["new_instance"]))
    async with manager.db.transaction() as session:
        row = await session.get(Instance, instance_id)
    assert row is not None, "the intent and its instance are written together"
    handle = Handle(row.pid, row.pid_started or "") if row.pid else None
    if handle is None or not manager.target.alive(handle):
        handle = manager.target.adopt(str(row.id)) or await _launch(manager, effect, row)
    await _record(
        manager,
        effect,
        update(Instance)
        .where(Instance.id == instance_id)
        .values(pid=handle.pid, pid_started=handle.started, started_at=utcnow()),
    )


async def _move_instance(
    manager: DeploymentManager,
    effect: Effect,
    origin: InstanceState,
    target: InstanceState,
    **values: object,
) -> None:
    """The action's instance from `origin` to `target`; guarded, so a redo changes nothing."""
    await _record(
        manager,
        effect,
        update(Instance)
        .where(
            Instance.id == uuid.UUID(str(effect.action.instance)),
            Instance.state == origin.value,
        )
        .values(state=target.value, **values),
    )


async def ready(manager: DeploymentManager, effect: Effect) -> None:
    await _move_instance(
        manager, effect, InstanceState.STARTING, InstanceState.READY, health_failures=0
    )


async def restart(manager: DeploymentManager, effect: Effect) -> None:
    instance_id = uuid.UUID(str(effect.action.instance))
    async with manager.db.transaction() as session:
        row = await session.get(Instance, instance_id)
    assert row is not None
    if row.pid:
        old = Handle(row.pid, row.pid_started or "")
        if manager.target.alive(old):
            manager.target.terminate(old, force=True)
    async with manager.fenced(effect.env_id, effect.fence) as session:
        # Out of the router first: a restarted instance comes back through `ready`.
        await session.execute(
            update(Instance)
            .where(Instance.id == instance_id)
            .values(state=InstanceState.STARTING.value, restarts=Instance.restarts + 1)
        )
    handle = await _launch(manager, effect, row)
    await _record(
        manager,
        effect,
        update(Instance)
        .where(Instance.id == instance_id)
        .values(pid=handle.pid, pid_started=handle.started, started_at=utcnow(), health_failures=0),
    )


async def drain(manager: DeploymentManager, effect: Effect) -> None:
    await _move_instance(
        manager, effect, InstanceState.READY, InstanceState.DRAINING, drain_started_at=utcnow()
    )


async def stop(manager: DeploymentManager, effect: Effect) -> AfterRoute:
    """Out of the router (the manager applies the new rows), then SIGTERM; the pass after
    the grace period kills it."""
    instance_id = uuid.UUID(str(effect.action.instance))
    async with manager.fenced(effect.env_id, effect.fence) as session:
        await session.execute(
            update(Instance)
            .where(Instance.id == instance_id, Instance.state != InstanceState.STOPPED.value)
            .values(state=InstanceState.STOPPED.value, stopped_at=utcnow())
        )
        row = await session.get(Instance, instance_id, populate_existing=True)
        await _done(session, effect)
    assert row is not None
    if not row.pid:
        return None
    handle = Handle(row.pid, row.pid_started or "")
    return lambda: manager.target.terminate(handle, force=False)


async def split(manager: DeploymentManager, effect: Effect) -> None:
    await _record(
        manager,
        effect,
        update(Environment)
        .where(Environment.id == effect.env_id)
        .values(canary_share=int(effect.action.share or 0)),
    )


async def promote(manager: DeploymentManager, effect: Effect) -> None:
    """The plan's revision becomes stable. Moving to the other slot relabels the slots
    (traffic is already there) and keeps the old stack warm for `scale_down_delay`."""
    plan, env = effect.driven.plan_row, effect.driven.env
    assert plan is not None
    values: dict[str, Any] = {
        "revision": plan.number,
        "digest": plan.digest,
        "runtime": plan.runtime,
    }
    if effect.action.slot != env.stable_slot and env.revision != plan.number:
        delay = float(plan.strategy.get("scale_down_delay", 30.0))
        values |= {
            "stable_slot": effect.action.slot,
            "canary_share": 0,
            "warm_digest": env.digest,
            "warm_until": utcnow() + timedelta(seconds=delay),
        }
    await _record(
        manager,
        effect,
        update(Environment)
        .where(Environment.id == effect.env_id, Environment.revision != plan.number)
        .values(values),
    )


async def advance(manager: DeploymentManager, effect: Effect) -> None:
    plan = effect.driven.plan_row
    assert plan is not None
    values: dict[str, Any] = {
        "step": effect.action.step,
        "step_started_at": utcnow(),
        "phase": Phase.PROGRESSING.value,
        "pause_reason": None,
    }
    if plan.request in (Request.PROMOTE.value, Request.PROMOTE_FULL.value):
        values["request"] = None
    await _record(
        manager,
        effect,
        update(Deployment)
        .where(
            Deployment.id == plan.id,
            Deployment.phase.in_(_from(Phase.PROGRESSING, Phase.PAUSED)),
        )
        .values(values),
    )


async def pause(manager: DeploymentManager, effect: Effect) -> None:
    plan = effect.driven.plan_row
    assert plan is not None
    await _record(
        manager,
        effect,
        update(Deployment)
        .where(Deployment.id == plan.id, Deployment.phase.in_(_may_become(Phase.PAUSED)))
        .values(phase=Phase.PAUSED.value, pause_reason=effect.action.reason),
    )


async def finish(manager: DeploymentManager, effect: Effect) -> None:
    plan = effect.driven.plan_row
    assert plan is not None and effect.action.phase is not None
    phase = effect.action.phase
    async with manager.fenced(effect.env_id, effect.fence) as session:
        await session.execute(
            update(Deployment)
            .where(Deployment.id == plan.id, Deployment.phase.in_(_may_become(phase)))
            .values(
                phase=phase.value,
                finished_at=utcnow(),
                message=effect.action.reason,
                request=None,
                pause_reason=None,
            )
        )
        if effect.action.pin:
            session.add(
                RevisionPin(
                    environment_id=effect.env_id,
                    digest=plan.digest,
                    reason=effect.action.reason,
                    pinned_by="conveyor (health check)",
                )
            )
        await _done(session, effect)


async def begin(manager: DeploymentManager, effect: Effect) -> None:
    (number,) = effect.action.numbers
    now = utcnow()
    await _record(
        manager,
        effect,
        update(Deployment)
        .where(
            Deployment.environment_id == effect.env_id,
            Deployment.number == number,
            Deployment.phase == Phase.PENDING.value,
        )
        .values(phase=Phase.PROGRESSING.value, started_at=now, step=0, step_started_at=now),
    )


async def supersede(manager: DeploymentManager, effect: Effect) -> None:
    await _record(
        manager,
        effect,
        update(Deployment)
        .where(
            Deployment.environment_id == effect.env_id,
            Deployment.number.in_(effect.action.numbers),
            Deployment.phase == Phase.PENDING.value,
        )
        .values(
            phase=Phase.ABORTED.value,
            finished_at=utcnow(),
            message="superseded by a newer deployment (queue policy newest-wins)",
        ),
    )


HANDLERS: dict[Act, Handler] = {
    Act.START: start,
    Act.READY: ready,
    Act.RESTART: restart,
    Act.DRAIN: drain,
    Act.STOP: stop,
    Act.SPLIT: split,
    Act.PROMOTE: promote,
    Act.ADVANCE: advance,
    Act.PAUSE: pause,
    Act.FINISH: finish,
    Act.BEGIN: begin,
    Act.SUPERSEDE: supersede,
}
