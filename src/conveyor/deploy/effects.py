"""What each planner action does: one handler per action (STYLE.md: dispatch with an
explicit dict). Each handler is idempotent, since a new driver repeats an intent whose
`done` it cannot see, and writes only inside the fenced transaction that marks it done.
A handler is given the driver's context and the effect (context.py), nothing more.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conveyor.deploy.approvals import unblock
from conveyor.deploy.context import DriverContext, Effect
from conveyor.deploy.instance_hosts import ArtifactGone
from conveyor.deploy.requests import audited, queue_rollback
from conveyor.deploy.world import Act
from conveyor.domain.audit import Action
from conveyor.domain.clock import as_utc
from conveyor.domain.deploy import DriverRequest, InstanceState, Phase
from conveyor.hosting.target import Task
from conveyor.observability import metrics
from conveyor.pipeline.deploy import Runtime
from conveyor.storage import analysis, deployments, environments, names
from conveyor.storage import hosts as host_rows
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import InstanceRecord

AfterRoute = Callable[[], None] | None
"""What a handler leaves to do once the router holds the new rows (stop: SIGTERM)."""
Handler = Callable[[DriverContext, Effect], Awaitable[AfterRoute]]
CHANGES_ROUTES = frozenset({Act.READY, Act.DRAIN, Act.STOP, Act.RESTART, Act.SPLIT, Act.PROMOTE})
"""Actions after which the router's config file is rewritten (not reloaded), so that a
reload or restart of the router comes back with the current routing."""


def pinned_by(rule: str) -> str:
    """Who pinned a revision that a rule stopped: `conveyor (health check)`."""
    return f"conveyor ({rule})"


async def _done(session: Session, effect: Effect) -> None:
    await environments.mark_done(session, effect.intent_id)


def _instance_id(effect: Effect) -> uuid.UUID:
    return uuid.UUID(str(effect.action.instance))


async def _row(ctx: DriverContext, instance_id: uuid.UUID) -> InstanceRecord:
    async with ctx.db.transaction() as session:
        row = await environments.instance(session, instance_id)
    assert row is not None, "the intent and its instance are written together"
    return row


async def start(ctx: DriverContext, effect: Effect) -> None:
    instance_id = uuid.UUID(str(effect.params["new_instance"]))
    row = await _row(ctx, instance_id)
    handle = await ctx.hosts_for(effect.driven.env).start(row, _runtime(effect, row))
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        if handle is not None:
            await environments.set_process(session, instance_id, handle.pid, handle.started)
        await _host_changed(session, row)
        await _done(session, effect)
    _wake(ctx, row)


def _runtime(effect: Effect, row: InstanceRecord) -> Runtime:
    runtime = effect.driven.runtime_for(row.digest)
    if runtime is None:
        raise ArtifactGone(f"no runtime is recorded for {row.digest}")
    return runtime


async def _host_changed(session: Session, row: InstanceRecord) -> None:
    """What the instance's host runs changed: its agent's long poll answers."""
    if row.host_id is not None:
        await host_rows.changed(session, [row.host_id])


def _wake(ctx: DriverContext, row: InstanceRecord) -> None:
    if row.host_id is not None:
        ctx.wake(row.host_id)


async def _move(ctx: DriverContext, effect: Effect, target: InstanceState, **values: Any) -> None:
    """The action's instance to `target`, guarded, so that a redo changes nothing."""
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await environments.move_instance(session, _instance_id(effect), target, **values)
        await _done(session, effect)


async def ready(ctx: DriverContext, effect: Effect) -> None:
    await _move(ctx, effect, InstanceState.READY, health_failures=0)


async def restart(ctx: DriverContext, effect: Effect) -> None:
    instance_id = _instance_id(effect)
    row = await _row(ctx, instance_id)
    hosts = ctx.hosts_for(effect.driven.env)
    hosts.kill(row)
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        # Out of the router first: a restarted instance comes back through `ready`. On
        # a fleet's host, the raised count is the incarnation its agent starts anew.
        await environments.restart_counted(session, instance_id)
        await _host_changed(session, row)
    _wake(ctx, row)
    handle = await hosts.start(replace(row, pid=None), _runtime(effect, row))
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        if handle is not None:
            await environments.set_process(
                session, instance_id, handle.pid, handle.started, health_failures=0
            )
        else:
            await environments.set_started(session, instance_id)
        await _done(session, effect)


async def drain(ctx: DriverContext, effect: Effect) -> None:
    await _move(ctx, effect, InstanceState.DRAINING, drain_started_at=ctx.clock())


async def stop(ctx: DriverContext, effect: Effect) -> AfterRoute:
    """Out of the router (the manager applies the new rows), then SIGTERM; the pass after
    the grace period kills it (on a fleet's host, its agent does both)."""
    instance_id = _instance_id(effect)
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await environments.move_instance(
            session, instance_id, InstanceState.STOPPED, stopped_at=ctx.clock()
        )
        row = await environments.instance(session, instance_id)
        assert row is not None
        await _host_changed(session, row)
        await _done(session, effect)
    _wake(ctx, row)
    return ctx.hosts_for(effect.driven.env).stop(row)


async def split(ctx: DriverContext, effect: Effect) -> None:
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await environments.set_canary_share(session, effect.env_id, int(effect.action.share or 0))
        await _done(session, effect)


async def promote(ctx: DriverContext, effect: Effect) -> None:
    """The plan's revision becomes stable. Moving to the other slot relabels the slots
    (traffic is already there) and keeps the old stack warm for `scale_down_delay`."""
    plan, env, rollout = effect.driven.plan_row, effect.driven.env, effect.driven.rollout
    assert plan is not None and rollout is not None
    relabel: dict[str, Any] = {}
    if effect.action.slot != env.stable_slot and env.revision != plan.number:
        relabel = {
            "new_slot": str(effect.action.slot),
            "warm_digest": env.digest,
            # A bake keeps the old stack warm as long as it judges, when that is longer.
            "warm_until": ctx.clock()
            + timedelta(seconds=max(rollout.scale_down_delay, rollout.bake_s)),
        }
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await environments.make_stable(
            session, effect.env_id, plan.number, plan.digest, plan.runtime, **relabel
        )
        await _done(session, effect)


async def _change_phase(
    ctx: DriverContext,
    effect: Effect,
    target: Phase,
    *,
    among: tuple[Phase, ...] | None = None,
    **values: Any,
) -> None:
    """The active deployment to `target` (guarded; a redo changes nothing)."""
    plan = effect.driven.plan_row
    assert plan is not None
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await deployments.change_phase(
            session, plan.id, target, strict=False, among=among, **values
        )
        await _done(session, effect)


async def advance(ctx: DriverContext, effect: Effect) -> None:
    plan = effect.driven.plan_row
    assert plan is not None
    values: dict[str, Any] = {
        "step": effect.action.step,
        "step_started_at": ctx.clock(),
        "pause_reason": None,
        "message": "",
    }
    if plan.request in (DriverRequest.PROMOTE.value, DriverRequest.PROMOTE_FULL.value):
        values["request"] = None
    # From progressing too: advancing a step keeps a deployment progressing.
    await _change_phase(
        ctx, effect, Phase.PROGRESSING, among=(Phase.PROGRESSING, Phase.PAUSED), **values
    )


async def pause(ctx: DriverContext, effect: Effect) -> None:
    plan = effect.driven.plan_row
    assert plan is not None
    if plan.phase == Phase.PAUSED.value:  # paused already, for another reason
        async with ctx.fenced(effect.env_id, effect.fence) as session:
            reason, message = effect.action.reason, effect.action.message
            await deployments.repause(session, plan.id, reason, message)
            await _done(session, effect)
        return
    await _change_phase(
        ctx, effect, Phase.PAUSED, pause_reason=effect.action.reason, message=effect.action.message
    )


async def release(ctx: DriverContext, effect: Effect) -> None:
    """Past its gate (or the stop-the-line switch lifted): the deployment goes on, and
    its start is now."""
    plan = effect.driven.plan_row
    assert plan is not None
    now = ctx.clock()
    values: dict[str, Any] = {"pause_reason": None, "message": "", "step_started_at": now}
    if plan.released_at is None:
        values |= {"released_at": now, "started_at": now}
    await _change_phase(
        ctx, effect, Phase.PROGRESSING, among=(Phase.PROGRESSING, Phase.PAUSED), **values
    )


async def _end(session: Session, effect: Effect, phase: Phase, now: datetime) -> bool:
    """The active deployment ends in `phase` with the action's reason as its message,
    its running analyses stopped, and its revision pinned when the action says so;
    False when it had ended already (a redo)."""
    plan = effect.driven.plan_row
    assert plan is not None
    moved = await deployments.change_phase(
        session,
        plan.id,
        phase,
        strict=False,
        finished_at=now,
        message=effect.action.reason,
        request=None,
        pause_reason=None,
    )
    await analysis.end_running(session, plan.id, f"the deployment ended: {effect.action.reason}")
    if moved and effect.action.pin:
        by = pinned_by(effect.action.pin)
        deployments.pin(session, effect.env_id, plan.digest, effect.action.reason, by)
        detail = {"digest": plan.digest, "reason": effect.action.reason}
        await audited(session, effect.driven.env, by, Action.PIN, plan.number, detail)
    if moved:
        await _count_end(session, effect, phase, now)
        await unblock(session, plan)  # a deploy job blocked on its approvals follows it
    return moved


async def _count_end(session: Session, effect: Effect, phase: Phase, now: datetime) -> None:
    plan, env = effect.driven.plan_row, effect.driven.env
    assert plan is not None
    team = await names.team(session, env.team_id)
    project = await names.project(session, env.project_id)
    strategy = str(plan.strategy.get("kind", ""))
    metrics.deployments_finished.labels(team, project, env.name, strategy, phase.value).inc()
    if plan.started_at is not None:
        took = (now - as_utc(plan.started_at)).total_seconds()
        metrics.deployment_duration.labels(strategy, phase.value).observe(max(took, 0.0))


async def finish(ctx: DriverContext, effect: Effect) -> None:
    assert effect.action.phase is not None
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await _end(session, effect, effect.action.phase, ctx.clock())
        await _done(session, effect)


async def rollback(ctx: DriverContext, effect: Effect) -> None:
    """A promoted deployment whose bake failed (or that a person aborted during it) ends
    aborted, and a rollback to the previous revision is queued in the same transaction:
    a traffic switch while that revision is warm, else a rolling redeploy of it."""
    env = effect.driven.env
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        if await _end(session, effect, Phase.ABORTED, ctx.clock()):
            target = await deployments.last_good_before(session, env)
            if target is not None:
                await queue_rollback(
                    session,
                    env,
                    target,
                    warm=effect.action.warm,
                    who=pinned_by("bake"),
                    automatic=bool(effect.action.pin),
                )
        await _done(session, effect)


async def _release(ctx: DriverContext, digest: str) -> Path:
    """The artifact unpacked on the coordinator's machine (where pre_deploy runs)."""
    blob = await ctx.blobs.local_file(digest)
    if blob is None:
        raise ArtifactGone(f"artifact {digest} is not in the store")
    return await asyncio.to_thread(ctx.target.prepare, digest, blob)


def task_id(deployment_id: uuid.UUID) -> str:
    """The target's task of a deployment's pre_deploy commands."""
    return f"pre-deploy-{deployment_id}"


async def pre_deploy(ctx: DriverContext, effect: Effect) -> None:
    """Start the plan's pre_deploy commands in its release directory (once per task id,
    so a redo does not run them twice)."""
    plan, runtime = effect.driven.plan_row, effect.driven.runtime
    assert plan is not None and runtime is not None
    host = effect.params.get("host")
    if host is not None:  # on the fleet: the host's agent runs them (fleet.task_of)
        host_id = uuid.UUID(str(host))
        async with ctx.fenced(effect.env_id, effect.fence) as session:
            await deployments.set_pre_deploy(
                session, plan.id, "running", before=None, host_id=host_id
            )
            await host_rows.changed(session, [host_id])
            await _done(session, effect)
        ctx.wake(host_id)
        return
    release = await _release(ctx, plan.digest)
    task = Task(
        id=task_id(plan.id),
        release=release,
        commands=tuple((c.command, c.timeout) for c in runtime.pre_deploy),
        env=dict(runtime.env),
    )
    await asyncio.to_thread(ctx.target.start_task, task)
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await deployments.set_pre_deploy(session, plan.id, "running", before=None)
        await _done(session, effect)


async def checked(ctx: DriverContext, effect: Effect) -> None:
    """The pre_deploy task ended: passed, or failed and the deployment is aborted
    before any of its instances started, with the failure as the reason."""
    plan = effect.driven.plan_row
    assert plan is not None
    failed = bool(effect.action.reason)
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await deployments.set_pre_deploy(
            session, plan.id, "failed" if failed else "passed", before="running"
        )
        if failed:
            await _end(session, effect, Phase.ABORTED, ctx.clock())
        await _done(session, effect)


async def begin(ctx: DriverContext, effect: Effect) -> None:
    """The queued deployment becomes the active one: past its gate already when the
    planner found it open (else the gate rule holds it, paused, until it opens)."""
    now = ctx.clock()
    released = {"released_at": now} if effect.action.released else {}
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await deployments.change_phase_by_number(
            session,
            effect.env_id,
            effect.action.numbers,
            Phase.PROGRESSING,
            origin=Phase.PENDING,
            started_at=now,
            step=0,
            step_started_at=now,
            **released,
        )
        await _done(session, effect)


async def supersede(ctx: DriverContext, effect: Effect) -> None:
    async with ctx.fenced(effect.env_id, effect.fence) as session:
        await deployments.change_phase_by_number(
            session,
            effect.env_id,
            effect.action.numbers,
            Phase.ABORTED,
            origin=Phase.PENDING,
            finished_at=ctx.clock(),
            message="superseded by a newer deployment (queue policy newest-wins)",
        )
        await _done(session, effect)


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
    Act.ROLLBACK: rollback,
    Act.RELEASE: release,
    Act.PRE_DEPLOY: pre_deploy,
    Act.CHECKED: checked,
    Act.BEGIN: begin,
    Act.SUPERSEDE: supersede,
}
