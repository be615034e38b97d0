"""The planner of every deployment: the next action for an environment, a pure function
of what its deployment wants and what the driver sees (STYLE.md: decisions are pure; a
controller is a flat list of small reconcile steps). `decide` tries each rule in turn;
the first that has something to do names one idempotent action, and the driver takes it,
records it, and asks again.

Every environment has two slots. Rolling replaces the stable slot's instances in place,
within `max_surge` and `max_unavailable`. Canary and blue-green start the new revision in
the other slot, move the split in steps, and promote by relabelling the slots, so that the
old stable stack stays whole (and warm for `scale_down_delay`) until then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from conveyor.deploy.router.base import SHARE_SCALE
from conveyor.deploy.world import (
    Act,
    Action,
    Due,
    Judged,
    Kind,
    Rollout,
    Seen,
    Step,
    StepKind,
    World,
    other,
    share_of,
)
from conveyor.domain import policy
from conveyor.domain.analysis import AnalysisPhase
from conveyor.domain.deploy import DriverRequest, InstanceState, PauseReason, Phase

# -- what each slot should hold ----------------------------------------------------------


def target_slot(world: World) -> str:
    """Where the plan's revision goes: the stable slot for rolling (and a first deploy),
    the other slot for canary, blue-green and switch."""
    assert world.plan is not None
    if world.plan.kind is Kind.ROLLING or world.env.digest is None:
        return world.env.stable_slot
    return other(world.env.stable_slot)


def in_place(world: World) -> bool:
    return world.plan is not None and target_slot(world) == world.env.stable_slot


def wanted(world: World) -> dict[str, tuple[str, int]]:
    """Per slot: the digest it should run and how many instances."""
    out: dict[str, tuple[str, int]] = {}
    env, plan = world.env, world.plan
    if env.digest is not None and env.replicas > 0:
        out[env.stable_slot] = (env.digest, env.replicas)
    if plan is not None and plan.released and plan.phase.is_active and env.revision != plan.number:
        out[target_slot(world)] = (plan.digest, plan.replicas)
    return out


def warm(world: World, seen: Seen) -> bool:
    """The previous stable revision, kept in the other slot until `warm_until`."""
    env = world.env
    return (
        seen.slot != env.stable_slot
        and env.warm_until is not None
        and world.now < env.warm_until
        and seen.digest == env.warm_digest
        and seen.digest not in world.pinned
        and (
            world.plan is None
            or target_slot(world) == env.stable_slot
            or _switching(world)
            or promoted(world)
        )
    )


def promoted(world: World) -> bool:
    """The active deployment's revision is stable already (it bakes)."""
    return world.plan is not None and world.env.revision == world.plan.number


def _switching(world: World) -> bool:
    return world.plan is not None and world.plan.kind is Kind.SWITCH


def surplus(world: World) -> list[Seen]:
    """Live instances no slot wants: another digest, or more than the count."""
    want = wanted(world)
    out: list[Seen] = []
    by_slot: dict[str, list[Seen]] = {}
    for seen in world.instances:
        by_slot.setdefault(seen.slot, []).append(seen)
    for slot, members in by_slot.items():
        digest, count = want.get(slot, ("", 0))
        keep = [m for m in members if m.digest == digest and m.state is not InstanceState.DRAINING]
        # Keep the healthiest: serving first, then ready, then starting.
        keep.sort(key=lambda m: (not m.serving, m.state is not InstanceState.READY))
        kept = {m.id for m in keep[:count]}
        out += [m for m in members if m.id not in kept and not warm(world, m)]
    return out


# -- the rules, in order -----------------------------------------------------------------

Rule = Callable[[World], Action | None]


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
    who = _who(plan)
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


HEALTH_RULE = "health check"
ANALYSIS_RULE = "analysis"


def _failed_analysis(world: World) -> str | None:
    for key, run in sorted(world.analyses.items()):
        if run.phase is AnalysisPhase.FAILED and key != BAKE:
            return f"analysis {run.template} failed: {run.reason}"
    return None


RESTART_DOWN_AFTER_S = 10
"""A steady instance the router has held DOWN this long is restarted. A shorter blip (a
stalled machine failing a few checks) heals by itself once its checks pass again, and a
restart then would only keep it out of the traffic longer."""


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
    plan = world.plan
    if plan is None or not plan.released or not plan.phase.is_active:
        return None
    if world.env.revision == plan.number:
        return _bake(world, plan)
    held = _stop_the_line(world, plan)
    if held is not None or plan.pause_reason is PauseReason.STOP:
        return held
    slot = target_slot(world)
    if not _complete(world, slot, plan.digest, plan.replicas):
        return None
    if in_place(world):
        return Action(Act.PROMOTE, slot=slot, digest=plan.digest)
    if plan.paused_by_user:
        return None
    if plan.request is DriverRequest.PROMOTE_FULL and plan.step < len(plan.steps):
        return Action(Act.ADVANCE, step=len(plan.steps), reason="promoted in full")
    if plan.step >= len(plan.steps):
        if world.env.canary_share != SHARE_SCALE:
            return Action(Act.SPLIT, share=SHARE_SCALE)
        return Action(Act.PROMOTE, slot=slot, digest=plan.digest)
    return _step(world, plan, plan.steps[plan.step])


def _bake(world: World, plan: Rollout) -> Action | None:
    """After promotion: done, unless a bake analysis judges the new revision while the
    old one is warm; a failed bake (or a person's abort) rolls back by itself."""
    ready = any(warm(world, s) and s.state is InstanceState.READY for s in world.instances)
    if plan.request is DriverRequest.ABORT:
        why = f"aborted by {_who(plan)} during the bake"
        return Action(Act.ROLLBACK, reason=why, warm=ready)
    run = world.analyses.get(BAKE)
    if plan.bake is None or _promote_requested(plan):
        return Action(Act.FINISH, phase=Phase.SUCCEEDED, reason="promoted")
    if run is None or run.phase is AnalysisPhase.RUNNING:
        return None
    if run.phase is AnalysisPhase.PASSED:
        return Action(Act.FINISH, phase=Phase.SUCCEEDED, reason="promoted; the bake passed")
    if run.phase is AnalysisPhase.FAILED:
        why = f"bake analysis {run.template} failed: {run.reason}"
        return Action(Act.ROLLBACK, reason=why, pin=ANALYSIS_RULE, warm=ready)
    return _pause_inconclusive(plan, run)


def _pause_inconclusive(plan: Rollout, run: Judged) -> Action | None:
    if plan.phase is Phase.PAUSED and plan.pause_reason is PauseReason.ANALYSIS:
        return None
    why = f"analysis {run.template} is inconclusive: {run.reason}; `promote` or `abort`"
    return Action(Act.PAUSE, reason=PauseReason.ANALYSIS.value, message=why)


def _who(plan: Rollout) -> str:
    return plan.requested_by or "request"


def _promote_requested(plan: Rollout) -> bool:
    return plan.request in (DriverRequest.PROMOTE, DriverRequest.PROMOTE_FULL)


def _step(world: World, plan: Rollout, step: Step) -> Action | None:
    if step.kind is StepKind.WEIGHT:
        share = share_of(step.weight or 0.0)
        if world.env.canary_share != share:
            return Action(Act.SPLIT, share=share)
        return Action(Act.ADVANCE, step=plan.step + 1)
    if _promote_requested(plan):
        return Action(Act.ADVANCE, step=plan.step + 1, reason=f"promoted by {_who(plan)}")
    if step.kind is StepKind.ANALYSIS and step.template is not None:
        return _judged_step(world, plan)
    if step.kind is StepKind.PAUSE and step.seconds is not None:
        started = plan.step_started or world.now
        if world.now >= started + timedelta(seconds=step.seconds):
            return Action(Act.ADVANCE, step=plan.step + 1)
        reason = PauseReason.TIMED
    else:
        reason = PauseReason.PROMOTION if step.kind is StepKind.PAUSE else PauseReason.ANALYSIS
    if plan.phase is not Phase.PAUSED or plan.pause_reason is not reason:
        return Action(Act.PAUSE, reason=reason.value)
    return None


def _judged_step(world: World, plan: Rollout) -> Action | None:
    """An analysis step: on when it passed, paused when it stayed inconclusive (a failed
    one is aborted by `_abort`)."""
    run = world.analyses.get(step_key(plan.step))
    if run is not None and run.phase is AnalysisPhase.PASSED:
        return Action(Act.ADVANCE, step=plan.step + 1, reason="analysis passed")
    if run is not None and run.phase is AnalysisPhase.INCONCLUSIVE:
        return _pause_inconclusive(plan, run)
    return None


BAKE = "bake"
BACKGROUND = "background"


def step_key(index: int) -> str:
    return f"step-{index}"


def analyses_due(world: World) -> list[Due]:
    """The analyses the active deployment needs now: before promotion its current
    analysis step and, while the canary takes traffic, its background analysis; after
    promotion, its bake."""
    plan = world.plan
    if plan is None or not plan.released or not plan.phase.is_active:
        return []
    if promoted(world):
        return [Due(BAKE, plan.bake, plan.bake_s, promoted=True)] if plan.bake else []
    due: list[Due] = []
    if plan.step < len(plan.steps):
        step = plan.steps[plan.step]
        if step.kind is StepKind.ANALYSIS and step.template is not None:
            due.append(Due(step_key(plan.step), step.template, step.seconds, step.preview))
    if plan.background and not in_place(world) and world.env.canary_share > 0:
        due.append(Due(BACKGROUND, plan.background, None))
    return due


def _complete(world: World, slot: str, digest: str, count: int) -> bool:
    """The slot holds exactly `count` serving instances of `digest`, and nothing else."""
    members = [s for s in world.instances if s.slot == slot]
    serving = [s for s in members if s.digest == digest and s.serving]
    return len(serving) == count and len(members) == count


PASSED = "passed"
RUNNING = "running"


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
        return Action(Act.PRE_DEPLOY)
    task = world.task
    if plan.pre_deploy_state != RUNNING or task is None:
        return None
    if task.ok:
        return Action(Act.CHECKED)
    why = "timed out" if task.exit_code == 124 else f"failed (exit {task.exit_code})"
    reason = f"pre_deploy `{task.command}` {why}: {task.output}".strip()
    return Action(Act.CHECKED, reason=reason)


def _blocked(world: World, digest: str) -> bool:
    """The plan's revision waits for its pre_deploy commands to pass."""
    plan = world.plan
    return (
        plan is not None
        and digest == plan.digest
        and plan.pre_deploy
        and plan.pre_deploy_state != PASSED
    )


def _start(world: World) -> Action | None:
    plan = world.plan
    surge = plan.surge if plan is not None and in_place(world) else 1
    held = plan is not None and plan.pause_reason is PauseReason.STOP
    for slot, (digest, count) in sorted(wanted(world).items()):
        if _blocked(world, digest) or (held and plan is not None and digest == plan.digest):
            continue
        members = [s for s in world.instances if s.slot == slot]
        have = [s for s in members if s.digest == digest and s.state is not InstanceState.DRAINING]
        if len(have) >= count:
            continue
        in_traffic = slot == world.env.stable_slot or world.env.canary_share > 0
        if in_traffic and len(members) >= count + surge:
            continue
        return Action(Act.START, slot=slot, digest=digest)
    return None


def _retire(world: World) -> Action | None:
    """Drain what no slot wants, without going under capacity in a slot that serves."""
    plan = world.plan
    unavailable = plan.unavailable if plan is not None and in_place(world) else 0
    for seen in surplus(world):
        if seen.state is InstanceState.READY and seen.router is None:
            continue  # the router has not reported it yet (it may have just restarted)
        if seen.state is InstanceState.DRAINING:
            continue
        if not (seen.serving or seen.takes_traffic):
            # Never in the traffic (starting, or out of the router): nothing to drain.
            return Action(Act.STOP, instance=seen.id, reason="not wanted")
        if seen.serving and _serves_traffic(world, seen.slot):
            _, count = wanted(world).get(seen.slot, ("", 0))
            serving = [s for s in world.instances if s.slot == seen.slot and s.serving]
            if count and len(serving) - 1 < count - unavailable:
                continue
        return Action(Act.DRAIN, instance=seen.id, reason="replaced")
    return None


def _serves_traffic(world: World, slot: str) -> bool:
    share = world.env.canary_share
    return share < SHARE_SCALE if slot == world.env.stable_slot else share > 0


RULES: Sequence[Rule] = (
    _queue,
    _abort,
    _gate,
    _heal,
    _ready,
    _drained,
    _progress,
    _checks,
    _start,
    _retire,
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
