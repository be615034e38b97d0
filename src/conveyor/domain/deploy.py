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
    # progressing → progressing: the driver advances to the next step.
    Phase.PROGRESSING: frozenset(
        {Phase.PROGRESSING, Phase.PAUSED, Phase.SUCCEEDED, Phase.ABORTED, Phase.FAILED}
    ),
    Phase.PAUSED: frozenset({Phase.PROGRESSING, Phase.ABORTED, Phase.FAILED}),
    Phase.SUCCEEDED: frozenset(),
    Phase.ABORTED: frozenset(),
    Phase.FAILED: frozenset(),
}


def phase_sources(target: Phase) -> frozenset[Phase]:
    """The phases a deployment may leave for `target` (for guarded updates)."""
    return frozenset(p for p, allowed in PHASE_TRANSITIONS.items() if target in allowed)


class PauseReason(StrEnum):
    TIMED = "timed"
    """A `pause` step with a duration: resumes by itself."""
    PROMOTION = "promotion"
    """A bare `pause`, or a blue-green preview: waits for `promote`."""
    ANALYSIS = "analysis"
    """An `analysis` step: recorded, and waits like a bare pause until analysis exists."""
    USER = "user"
    """`conveyor pause`: waits for `resume`."""
    APPROVAL = "approval"
    """At its gate, before it changes anything: waits for its approvals."""
    WAIT = "wait-timer"
    """At its gate: the environment's wait timer runs."""
    FREEZE = "freeze"
    """At its gate: a freeze window holds it until the window ends."""
    STOP = "stop-the-line"
    """The company's stop-the-line switch holds it (at its gate, or at its next step)."""
    PLACEMENT = "placement"
    """No host can take its next instance (runtime.placement): goes on by itself once
    one can."""

    @property
    def gate(self) -> bool:
        """A hold of the policy gate (domain.policy), not of the rollout's steps."""
        return self in GATE_HOLDS


GATE_HOLDS = frozenset(
    {PauseReason.APPROVAL, PauseReason.WAIT, PauseReason.FREEZE, PauseReason.STOP}
)


class Control(StrEnum):
    """What a person asks of an environment's current deployment (`conveyor promote`,
    `pause`, `resume`, `abort`)."""

    PROMOTE = "promote"
    """Skip the current pause."""
    PROMOTE_FULL = "promote-full"
    """Skip every remaining step."""
    PAUSE = "pause"
    """Hold the deployment where it is until `resume`."""
    RESUME = "resume"
    ABORT = "abort"
    """Traffic back to stable at once, then remove the new revision."""


class DriverRequest(StrEnum):
    """A control left on the deployment for its driver to carry out (pause and resume
    change the phase at once instead)."""

    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"


class QueuePolicy(StrEnum):
    """How an environment queues deployments behind the one in progress."""

    ORDERED = "ordered"
    """Each runs in turn."""
    NEWEST_WINS = "newest-wins"
    """When the current one ends, only the newest queued one runs; the others are
    aborted as superseded."""


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
    # A restart (the process died, or the router held it down) starts it again: from
    # starting too, when it died before it was ready.
    InstanceState.STARTING: frozenset(
        {InstanceState.STARTING, InstanceState.READY, InstanceState.STOPPED}
    ),
    InstanceState.READY: frozenset(
        {InstanceState.STARTING, InstanceState.DRAINING, InstanceState.STOPPED}
    ),
    InstanceState.DRAINING: frozenset({InstanceState.STOPPED}),
    InstanceState.STOPPED: frozenset(),
}
"""Enforced by storage.environments.move_instance: every instance move is one guarded
UPDATE."""


def instance_sources(target: InstanceState) -> frozenset[InstanceState]:
    """The states an instance may leave for `target`."""
    return frozenset(s for s, allowed in INSTANCE_TRANSITIONS.items() if target in allowed)
