"""The lifecycle of an analysis run (docs/states.md, docs/analysis.md)."""

from __future__ import annotations

from enum import StrEnum


class AnalysisPhase(StrEnum):
    """Where an analysis is, after its latest evaluation."""

    RUNNING = "running"
    """Measuring: its duration has not passed (or it extends an inconclusive end)."""
    PASSED = "passed"
    """Every metric passed once its duration had passed: the deployment goes on."""
    FAILED = "failed"
    """A metric failed more than failure_limit times: the deployment is aborted (rolled
    back, after promotion) and its revision pinned."""
    INCONCLUSIVE = "inconclusive"
    """Still inconclusive after inconclusive_limit more evaluations: the deployment
    pauses for a person (`promote` past it, or `abort`)."""
    STOPPED = "stopped"
    """Ended without a verdict: the deployment moved past it (a person promoted or
    aborted, or the step it judged ended)."""

    @property
    def is_final(self) -> bool:
        return self is not AnalysisPhase.RUNNING


ANALYSIS_TRANSITIONS: dict[AnalysisPhase, frozenset[AnalysisPhase]] = {
    AnalysisPhase.RUNNING: frozenset(
        {
            AnalysisPhase.RUNNING,
            AnalysisPhase.PASSED,
            AnalysisPhase.FAILED,
            AnalysisPhase.INCONCLUSIVE,
            AnalysisPhase.STOPPED,
        }
    ),
    AnalysisPhase.PASSED: frozenset(),
    AnalysisPhase.FAILED: frozenset(),
    AnalysisPhase.INCONCLUSIVE: frozenset(),
    AnalysisPhase.STOPPED: frozenset(),
}
"""Enforced by storage.analysis: a run moves only while running (one guarded UPDATE)."""
