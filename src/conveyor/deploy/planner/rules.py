"""The planner of every deployment: the next action for an environment, a pure function
of what its deployment wants and what the driver sees (STYLE.md: decisions are pure; a
controller is a flat list of small reconcile steps). `decide` tries each rule in turn;
the first that has something to do names one idempotent action, and the driver takes it,
records it, and asks again.

The rules here are every strategy's (the queue, aborts, the gate, healing, readiness,
draining, the pre_deploy checks, the bake); what differs by strategy is in rolling.py,
blue_green.py and canary.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from conveyor.deploy.planner import canary
from conveyor.deploy.planner.common import (
    complete,
    in_place,
    pause_inconclusive,
    promote_requested,
    promoted,
    surplus,
    target_slot,
    wanted,
    warm,
    who_asked,
)
from conveyor.deploy.planner.rolling import retire, start
from conveyor.deploy.world import Act, Action, Due, Rollout, StepKind, World, share_of
from conveyor.domain import policy
from conveyor.domain.analysis import AnalysisPhase
from conveyor.domain.deploy import DriverRequest, InstanceState, PauseReason, Phase

Rule = Callable[[World], Action | None]
HEALTH_RULE = "health check"
ANALYSIS_RULE = "analysis"
RESTART_DOWN_AFTER_S = 10
"""A steady instance the router has held DOWN this long is restarted. A shorter blip (a
stalled machine failing a few checks) heals by itself once its checks pass again, and a
restart then would only keep it out of the traffic longer."""
BAKE = "bake"
RUNNING = "running"
"""A revision's pre_deploy checks are running."""


def decide(world: World) -> Action | None:
    """The next action, or None when the environment is where it should be for now."""
    for rule in RULES:
        action = rule(world)
        if action is not None:
            return action
    return None


def _queue(world: World) -> Action | None:
    """No active deployment: start the next queued one (newest-wins supersedes the rest)."""
    if world.plan is not None or not world.pending:
        return None
    if world.newest_wins and len(world.pending) > 1:
        return Action(Act.SUPERSEDE, numbers=world.pending[:-1], reason="superseded")
    gate = world.next_gate
    verdict = policy.judge(gate, world.now) if gate is not None else None
    opened = verdict is not None and verdict.hold is None and not verdict.timed_out
    return Action(Act.BEGIN, numbers=(world.pending[0],), released=opened)


def _abort(world: World) -> Action | None:
    """A person's abort, or the health-check rule: traffic back to stable first."""
    plan = world.plan
    if plan is None or not plan.phase.is_active or world.env.revision == plan.number:
        return None
    unhealthy, failed = _unhealthy(world), _failed_analysis(world)
    reason = unhealthy or failed
    if plan.request is not DriverRequest.ABORT and reason is None:
        return None
    if not in_place(world) and world.env.canary_share != 0:
        return Action(Act.SPLIT, share=0, reason="abort")
    who = who_asked(plan)
    return Action(
        Act.FINISH,
        phase=Phase.ABORTED,
        reason=reason or (who if who.startswith("rejected by") else f"aborted by {who}"),
        pin=HEALTH_RULE if unhealthy else ANALYSIS_RULE if failed else "",
    )


def _gate(world: World) -> Action | None:
    """A deployment that has not passed its gate (docs/policy.md) waits there, paused
    with why, and changes nothing; once the gate opens it is released. Its approvals
    timing out ends it (or, when the rules say `approve`, releases it)."""
    plan = world.plan
    if plan is None or plan.released or not plan.phase.is_active or plan.paused_by_user:
        return None
    verdict = policy.judge(plan.gate, world.now)
    if verdict.timed_out:
        return Action(Act.FINISH, phase=Phase.ABORTED, reason=verdict.message)
    if verdict.hold is None:
        return Action(Act.RELEASE)
    if plan.phase is Phase.PAUSED and plan.pause_reason is verdict.hold:
        return None
    return Action(Act.PAUSE, reason=verdict.hold.value, message=verdict.message)


def _stop_the_line(world: World, plan: Rollout) -> Action | None:
    """The stop-the-line switch holds a released deployment before its next step (a
    rollback and an emergency deploy go on); lifted, the deployment goes on. A person's
    `pause` outranks it."""
    if plan.paused_by_user:
        return None
    if plan.gate.stopped and not plan.gate.bypass:
        if plan.phase is Phase.PAUSED and plan.pause_reason is PauseReason.STOP:
            return None
        return Action(
            Act.PAUSE, reason=PauseReason.STOP.value, message="stop-the-line is on: held here"
        )
    if plan.phase is Phase.PAUSED and plan.pause_reason is PauseReason.STOP:
        return Action(Act.RELEASE)
    return None


def _unhealthy(world: World) -> str | None:
    """Why the plan's new instances count as failed, if they do."""
    plan = world.plan
    assert plan is not None
    for seen in world.instances:
        if seen.digest != plan.digest or seen.slot != target_slot(world):
            continue
        if seen.restarts > plan.max_restarts:
            return f"instance {seen.id[:8]} crashed {seen.restarts} times"
        if seen.health_failures >= plan.health_failures:
            return f"instance {seen.id[:8]} failed {seen.health_failures} health checks"
        if seen.router_down:
            return f"instance {seen.id[:8]} failed its health checks in the router"
    return None


def _failed_analysis(world: World) -> str | None:
    for key, run in sorted(world.analyses.items()):
        if run.phase is AnalysisPhase.FAILED and key != BAKE:
            return f"analysis {run.template} failed: {run.reason}"
    return None


def _heal(world: World) -> Action | None:
    """A wanted instance whose process died is restarted (and counted); a steady
    instance that the router has held down for RESTART_DOWN_AFTER_S is restarted too."""
    doomed = {s.id for s in surplus(world)}
    plan_digest = world.plan.digest if world.plan else None
    for seen in world.instances:
        if seen.id in doomed or seen.state is InstanceState.DRAINING:
            continue
        if not seen.alive:
            return Action(Act.RESTART, instance=seen.id, reason="process exited")
        if seen.router_down and seen.digest != plan_digest:
            assert seen.router is not None
            if seen.router.since_s >= RESTART_DOWN_AFTER_S:
                return Action(Act.RESTART, instance=seen.id, reason="down in the router")
    return None


def _ready(world: World) -> Action | None:
    for seen in world.instances:
        if seen.state is InstanceState.STARTING and seen.alive and seen.probe_ok:
            return Action(Act.READY, instance=seen.id)
    return None


def _drained(world: World) -> Action | None:
    for seen in world.instances:
        if seen.state is not InstanceState.DRAINING or seen.draining_s is None:
            continue
        idle = seen.router is None or (seen.router.sessions == 0 and seen.router.queued == 0)
        if (
            not seen.alive
            or (idle and seen.draining_s >= 0.2)
            or seen.draining_s >= world.env.drain_s
        ):
            return Action(Act.STOP, instance=seen.id, reason="drained")
    return None


def _progress(world: World) -> Action | None:
    """A released deployment moves on once its slot is complete: in place it promotes
    (rolling); otherwise through its steps (canary.py; a blue-green's are its preview's
    analysis and its pause)."""
    plan = world.plan
    if plan is None or not plan.released or not plan.phase.is_active:
        return None
    if world.env.revision == plan.number:
        return _bake(world, plan)
    held = _stop_the_line(world, plan)
    if held is not None or plan.pause_reason is PauseReason.STOP:
        return held
    slot = target_slot(world)
    if not complete(world, slot, plan.digest, plan.replicas):
        return None
    if in_place(world):
        return Action(Act.PROMOTE, slot=slot, digest=plan.digest)
    return canary.through_steps(world, plan, slot)


def _bake(world: World, plan: Rollout) -> Action | None:
    """After promotion: done, unless a bake analysis judges the new revision while the
    old one is warm; a failed bake (or a person's abort) rolls back by itself."""
    ready = any(warm(world, s) and s.state is InstanceState.READY for s in world.instances)
    if plan.request is DriverRequest.ABORT:
        why = f"aborted by {who_asked(plan)} during the bake"
        return Action(Act.ROLLBACK, reason=why, warm=ready)
    run = world.analyses.get(BAKE)
    if plan.bake is None or promote_requested(plan):
        return Action(Act.FINISH, phase=Phase.SUCCEEDED, reason="promoted")
    if run is None or run.phase is AnalysisPhase.RUNNING:
        return None
    if run.phase is AnalysisPhase.PASSED:
        return Action(Act.FINISH, phase=Phase.SUCCEEDED, reason="promoted; the bake passed")
    if run.phase is AnalysisPhase.FAILED:
        why = f"bake analysis {run.template} failed: {run.reason}"
        return Action(Act.ROLLBACK, reason=why, pin=ANALYSIS_RULE, warm=ready)
    return pause_inconclusive(plan, run)


def analyses_due(world: World) -> list[Due]:
    """The analyses the active deployment needs now: before promotion its steps' (see
    canary.due); after promotion, its bake."""
    plan = world.plan
    if plan is None or not plan.released or not plan.phase.is_active:
        return []
    if promoted(world):
        return [Due(BAKE, plan.bake, plan.bake_s, promoted=True)] if plan.bake else []
    return canary.due(world, plan)


def _checks(world: World) -> Action | None:
    """The plan's pre_deploy commands, once, before its first instance starts."""
    plan = world.plan
    if (
        plan is None
        or not plan.released
        or not plan.phase.is_active
        or not plan.pre_deploy
        or promoted(world)
    ):
        return None
    if plan.pre_deploy_state is None:
        # On the fleet they run on a host placement picks: with none, the deployment
        # pauses with placement's reason, and goes on when a host can take them.
        waiting = plan.phase is Phase.PAUSED and plan.pause_reason is PauseReason.PLACEMENT
        if world.no_room is not None:
            if waiting:
                return None
            return Action(Act.PAUSE, reason=PauseReason.PLACEMENT.value, message=world.no_room)
        return Action(Act.RELEASE) if waiting else Action(Act.PRE_DEPLOY)
    task = world.task
    if plan.pre_deploy_state != RUNNING or task is None:
        return None
    if task.ok:
        return Action(Act.CHECKED)
    why = "timed out" if task.exit_code == 124 else f"failed (exit {task.exit_code})"
    reason = f"pre_deploy `{task.command}` {why}: {task.output}".strip()
    return Action(Act.CHECKED, reason=reason)


RULES: Sequence[Rule] = (
    _queue,
    _abort,
    _gate,
    _heal,
    _ready,
    _drained,
    _progress,
    _checks,
    start,
    retire,
)


def states(world: World) -> tuple[dict[str, object], dict[str, object]]:
    """What the deployment wants and what the driver saw, as recorded on it at each
    action: per slot the digest and count wanted, and the canary share; per slot the
    serving instances by digest, and the share in force."""
    wanted_slots = {
        slot: {"digest": digest, "replicas": count}
        for slot, (digest, count) in wanted(world).items()
    }
    desired: dict[str, object] = {"slots": wanted_slots, "stable_slot": world.env.stable_slot}
    plan = world.plan
    if plan is not None and not in_place(world) and plan.step < len(plan.steps):
        step = plan.steps[plan.step]
        if step.kind is StepKind.WEIGHT:
            desired["canary_share"] = share_of(step.weight or 0.0)
    serving: dict[str, dict[str, int]] = {}
    for seen in world.instances:
        if seen.serving:
            per_slot = serving.setdefault(seen.slot, {})
            per_slot[seen.digest] = per_slot.get(seen.digest, 0) + 1
    observed: dict[str, object] = {
        "serving": serving,
        "live": len(world.instances),
        "canary_share": world.env.canary_share,
        "stable_slot": world.env.stable_slot,
    }
    return desired, observed
