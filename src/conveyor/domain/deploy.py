"""Deployment and instance lifecycles (DESIGN.md section 5, docs/states.md)."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where a deployment is."""

    PENDING = "pending"
    """Queued behind the environment's current deployment."""
    PROGRESSING = "progressing"
    """Its driver is taking steps."""
    PAUSED = "paused"
    """Waiting: a timed pause, or for `promote` (a bare pause, an analysis step, a
    blue-green preview), or stopped by `pause`."""
    SUCCEEDED = "succeeded"
    """Its revision is the environment's stable revision."""
    ABORTED = "aborted"
    """Stopped by a person, by the health-check rule, or superseded; traffic went back to
    the stable revision."""
    FAILED = "failed"
    """Could not go on (the artifact is gone, the router refused its config)."""

    @property
    def is_final(self) -> bool:
        return self in FINAL_PHASES

    @property
    def is_active(self) -> bool:
        return self in (Phase.PROGRESSING, Phase.PAUSED)


FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ABORTED, Phase.FAILED})

PHASE_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.PROGRESSING, Phase.ABORTED, Phase.FAILED}),
    Phase.PROGRESSING: frozenset({Phase.PAUSED, Phase.SUCCEEDED, Phase.ABORTED, Phase.FAILED}),
    Phase.PAUSED: frozenset({Phase.PROGRESSING, Phase.ABORTED, Phase.FAILED}),
    Phase.SUCCEEDED: frozenset(),
    Phase.ABORTED: frozenset(),
    Phase.FAILED: frozenset(),
}


class PauseReason(StrEnum):
    TIMED = "timed"
    """A `pause` step with a duration: resumes by itself."""
    PROMOTION = "promotion"
    """A bare `pause`, or a blue-green preview: waits for `promote`."""
    ANALYSIS = "analysis"
    """An `analysis` step: recorded, and waits like a bare pause until analysis exists."""
    USER = "user"
    """`conveyor pause`: waits for `resume`."""


class Request(StrEnum):
    """A person's command, left for the driver of the environment."""

    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"


class InstanceState(StrEnum):
    """Where one instance is."""

    STARTING = "starting"
    """Its process runs; not yet healthy, not in the router."""
    READY = "ready"
    """Healthy: in the router, taking traffic at its slot's share."""
    DRAINING = "draining"
    """Takes no new connections; stopped once its sessions reach 0 or the drain time
    has passed."""
    STOPPED = "stopped"
    """Out of the router, its process ended."""

    @property
    def live(self) -> bool:
        return self is not InstanceState.STOPPED


INSTANCE_TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    InstanceState.STARTING: frozenset({InstanceState.READY, InstanceState.STOPPED}),
    InstanceState.READY: frozenset({InstanceState.DRAINING, InstanceState.STOPPED}),
    InstanceState.DRAINING: frozenset({InstanceState.STOPPED}),
    InstanceState.STOPPED: frozenset(),
}
