"""Canary (and a blue-green's preview): the steps of weight, pause and analysis, taken
one at a time once the new revision's slot is complete, then the full split and the
promotion; and the analyses the steps ask for (a step's, and the background one while
the canary takes traffic)."""

from __future__ import annotations

from datetime import timedelta

from conveyor.deploy.planner.common import (
    in_place,
    pause_inconclusive,
    promote_requested,
    who_asked,
)
from conveyor.deploy.strategy import (
    DEFAULT_ANALYSIS_S,
    AnalysisStep,
    DeployStrategy,
    PauseStep,
    WeightStep,
)
from conveyor.deploy.world import (
    Act,
    Action,
    Due,
    Rollout,
    Step,
    StepKind,
    World,
    share_of,
)
from conveyor.domain.analysis import AnalysisPhase
from conveyor.domain.deploy import DriverRequest, PauseReason, Phase
from conveyor.hosting.routing import SHARE_SCALE

BACKGROUND = "background"


def steps(strategy: DeployStrategy) -> tuple[Step, ...]:
    """A canary's steps, as the planner takes them."""
    out: list[Step] = []
    for step in strategy.steps:
        if isinstance(step, WeightStep):
            out.append(Step(StepKind.WEIGHT, weight=step.weight))
        elif isinstance(step, PauseStep):
            out.append(Step(StepKind.PAUSE, seconds=step.pause))
        else:
            out.append(analysis_step(step))
    return tuple(out)


def analysis_step(step: AnalysisStep, preview: bool = False) -> Step:
    """An analysis judges for `for` seconds (60 unless said); without a template it
    waits for `promote`."""
    if step.analysis is None:
        return Step(StepKind.ANALYSIS)
    seconds = step.for_ if step.for_ is not None else DEFAULT_ANALYSIS_S
    return Step(StepKind.ANALYSIS, seconds=seconds, template=step.analysis, preview=preview)


def through_steps(world: World, plan: Rollout, slot: str) -> Action | None:
    """Once the new revision's slot is complete: the next step, then the whole traffic,
    then the promotion."""
    if plan.paused_by_user:
        return None
    if plan.request is DriverRequest.PROMOTE_FULL and plan.step < len(plan.steps):
        return Action(Act.ADVANCE, step=len(plan.steps), reason="promoted in full")
    if plan.step >= len(plan.steps):
        if world.env.canary_share != SHARE_SCALE:
            return Action(Act.SPLIT, share=SHARE_SCALE)
        return Action(Act.PROMOTE, slot=slot, digest=plan.digest)
    return take_step(world, plan, plan.steps[plan.step])


def take_step(world: World, plan: Rollout, step: Step) -> Action | None:
    if step.kind is StepKind.WEIGHT:
        share = share_of(step.weight or 0.0)
        if world.env.canary_share != share:
            return Action(Act.SPLIT, share=share)
        return Action(Act.ADVANCE, step=plan.step + 1)
    if promote_requested(plan):
        return Action(Act.ADVANCE, step=plan.step + 1, reason=f"promoted by {who_asked(plan)}")
    if step.kind is StepKind.ANALYSIS and step.template is not None:
        return judged_step(world, plan)
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


def judged_step(world: World, plan: Rollout) -> Action | None:
    """An analysis step: on when it passed, paused when it stayed inconclusive (a failed
    one is aborted by `_abort`)."""
    run = world.analyses.get(step_key(plan.step))
    if run is not None and run.phase is AnalysisPhase.PASSED:
        return Action(Act.ADVANCE, step=plan.step + 1, reason="analysis passed")
    if run is not None and run.phase is AnalysisPhase.INCONCLUSIVE:
        return pause_inconclusive(plan, run)
    return None


def step_key(index: int) -> str:
    return f"step-{index}"


def due(world: World, plan: Rollout) -> list[Due]:
    """Before promotion: the current analysis step's run and, while the canary takes
    traffic, the background analysis."""
    found: list[Due] = []
    if plan.step < len(plan.steps):
        step = plan.steps[plan.step]
        if step.kind is StepKind.ANALYSIS and step.template is not None:
            found.append(Due(step_key(plan.step), step.template, step.seconds, step.preview))
    if plan.background and not in_place(world) and world.env.canary_share > 0:
        found.append(Due(BACKGROUND, plan.background, None))
    return found
