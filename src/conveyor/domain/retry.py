"""Whether a failed attempt earns another: one rule for `conveyor run` and the server."""

from __future__ import annotations

from collections.abc import Collection

from conveyor.domain.failure import FailureClass

RUNNER_LOST_RETRIES = 2
"""How often a job whose runner was lost runs again, even when its `retry` says nothing:
a lost runner is never the job's fault."""


def retry_due(
    cls: FailureClass | None, attempt: int, max_retries: int, when: Collection[FailureClass]
) -> bool:
    """Whether attempt number `attempt` (from 1), failed with `cls`, earns another, for a
    job whose `retry` is `max_retries` times `when` these classes. A lost runner is
    retried up to RUNNER_LOST_RETRIES times whatever the job says."""
    if cls is None:
        return False
    if cls in when and attempt <= max_retries:
        return True
    return cls is FailureClass.RUNNER_LOST and attempt <= RUNNER_LOST_RETRIES
