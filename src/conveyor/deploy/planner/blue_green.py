"""Blue-green: the new revision starts whole in the other slot, reachable on the preview
port; an optional analysis judges the preview's own requests (`pre_promotion`), then the
deployment waits for `promote` unless it promotes itself (`auto_promote`), and the switch
moves all the traffic at once. The old stack stays warm for `scale_down_delay`."""

from __future__ import annotations

from conveyor.deploy.planner.canary import analysis_step
from conveyor.deploy.strategy import AnalysisStep, DeployStrategy
from conveyor.deploy.world import Step, StepKind


def steps(strategy: DeployStrategy) -> tuple[Step, ...]:
    """The preview's analysis (if any), then a pause until promoted (unless it promotes
    itself); the canary machinery takes them, then switches the whole traffic."""
    out: list[Step] = []
    judged = strategy.pre_promotion
    if judged is not None:
        step = AnalysisStep(analysis=judged.analysis, for_=judged.for_)
        out.append(analysis_step(step, preview=True))
    if not strategy.auto_promote:
        out.append(Step(StepKind.PAUSE))
    return tuple(out)
