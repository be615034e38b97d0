"""Lifecycle events: the types Conveyor tells the outside world about (docs/events.md),
and how a subscription's patterns choose among them."""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.domain.deploy import Phase

RUN_QUEUED = "run.queued"
RUN_FINISHED = "run.finished"
DEPLOYMENT_STARTED = "deployment.started"
DEPLOYMENT_PAUSED = "deployment.paused"
DEPLOYMENT_RESUMED = "deployment.resumed"
DEPLOYMENT_SUCCEEDED = "deployment.succeeded"
DEPLOYMENT_ROLLED_BACK = "deployment.rolled_back"
"""A rollback deployment succeeded: the environment is back on an earlier revision."""
DEPLOYMENT_ABORTED = "deployment.aborted"
DEPLOYMENT_FAILED = "deployment.failed"
DEPLOYMENT_APPROVAL_REQUESTED = "deployment.approval_requested"
"""It waits for approvals (its `approval` says how many, by whom, and why)."""
DEPLOYMENT_APPROVED = "deployment.approved"
"""Its last required approval came."""
DEPLOYMENT_REJECTED = "deployment.rejected"
DEPLOYMENT_EMERGENCY = "deployment.emergency"
"""An emergency deploy or rollback was asked for (past freezes and approvals)."""
HOST_JOINED = "host.joined"
"""A host's agent registered it: a new host, or one that came back (`data.rejoined`)."""
HOST_LOST = "host.lost"
"""A host's lease ran out: its agent is fenced and its instances are replaced."""
HOST_DRAINED = "host.drained"
"""A draining host runs nothing any more: every instance of it moved elsewhere."""

TYPES = (
    RUN_QUEUED,
    RUN_FINISHED,
    DEPLOYMENT_STARTED,
    DEPLOYMENT_PAUSED,
    DEPLOYMENT_RESUMED,
    DEPLOYMENT_SUCCEEDED,
    DEPLOYMENT_ROLLED_BACK,
    DEPLOYMENT_ABORTED,
    DEPLOYMENT_FAILED,
    DEPLOYMENT_APPROVAL_REQUESTED,
    DEPLOYMENT_APPROVED,
    DEPLOYMENT_REJECTED,
    DEPLOYMENT_EMERGENCY,
    HOST_JOINED,
    HOST_LOST,
    HOST_DRAINED,
)
ALL = "*"
PREFIXES = tuple(sorted({t.split(".")[0] + ".*" for t in TYPES}))
"""Every type of a kind: `run.*`, `deployment.*`, `host.*`."""


def deployment_event(target: Phase, kind: str, *, resumed: bool = False) -> str | None:
    """The event of a deployment reaching `target` (None: a move that tells nothing new,
    such as the next step of a progressing one)."""
    if target is Phase.PROGRESSING:
        return DEPLOYMENT_RESUMED if resumed else None
    if target is Phase.SUCCEEDED:
        return DEPLOYMENT_ROLLED_BACK if kind == "rollback" else DEPLOYMENT_SUCCEEDED
    return {
        Phase.PAUSED: DEPLOYMENT_PAUSED,
        Phase.ABORTED: DEPLOYMENT_ABORTED,
        Phase.FAILED: DEPLOYMENT_FAILED,
    }.get(target)


def check_patterns(patterns: Iterable[str]) -> list[str]:
    """Each pattern is a type, a prefix ending in `.*` or `*`; ValueError says which one
    is none of these."""
    out = []
    prefixes = {t.split(".")[0] for t in TYPES}
    for pattern in patterns:
        if pattern == ALL or pattern in TYPES:
            out.append(pattern)
        elif pattern.endswith(".*") and pattern[:-2] in prefixes:
            out.append(pattern)
        else:
            raise ValueError(
                f"{pattern!r} is not an event type: use one of {', '.join(TYPES)}, "
                f"a prefix such as deployment.*, or *"
            )
    return out


def matches(patterns: Iterable[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern in (ALL, event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
