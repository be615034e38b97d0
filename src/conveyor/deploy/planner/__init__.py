"""The planner of every deployment (pure): `decide` names the next action for an
environment from what its deployment wants and what the driver sees.

    rules.py       the rules every strategy shares, in order, and `decide`
    common.py      what each slot should hold; who asked for what
    rolling.py     replacing instances within max_surge / max_unavailable
    blue_green.py  the preview, its analysis and the switch's pause
    canary.py      steps of weight, pause and analysis; the background analysis
"""

from __future__ import annotations

from conveyor.deploy.planner import blue_green, canary, rolling
from conveyor.deploy.planner.canary import BACKGROUND, step_key
from conveyor.deploy.planner.common import in_place, target_slot
from conveyor.deploy.planner.rolling import PASSED
from conveyor.deploy.planner.rules import (
    ANALYSIS_RULE,
    BAKE,
    HEALTH_RULE,
    RUNNING,
    analyses_due,
    decide,
    states,
)
from conveyor.deploy.strategy import DeployStrategy
from conveyor.deploy.world import Kind, Step


def steps_of(strategy: DeployStrategy) -> tuple[Step, ...]:
    """The planner's steps of a strategy, by its kind."""
    if strategy.kind is Kind.CANARY:
        return canary.steps(strategy)
    if strategy.kind is Kind.BLUE_GREEN:
        return blue_green.steps(strategy)
    return rolling.steps()


__all__ = [
    "ANALYSIS_RULE",
    "BACKGROUND",
    "BAKE",
    "HEALTH_RULE",
    "PASSED",
    "RUNNING",
    "analyses_due",
    "decide",
    "in_place",
    "states",
    "step_key",
    "steps_of",
    "target_slot",
]
