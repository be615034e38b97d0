"""Job and run lifecycles (DESIGN.md section 5) and the pure function that merges job
statuses into a run status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its lifecycle."""

    CREATED = "created"
    """In the plan; its needs have not finished yet."""
    PENDING = "pending"
    """Ready to run, waiting for a free slot or runner."""
    RUNNING = "running"
    """An attempt is executing."""
    SUCCESS = "success"
    """The last attempt passed its script and gates."""
    FAILED = "failed"
    """The last attempt failed and no retry is left."""
    CANCELED = "canceled"
    """Stopped by a person, Ctrl-C or a newer run."""
    SKIPPED = "skipped"
    """Not run: a need failed, or its `when` did not match the outcome upstream."""
    MANUAL = "manual"
    """Waits for a person to start it (`when: manual`)."""
    BLOCKED = "blocked"
    """Waits for an approval."""

    @property
    def is_final(self) -> bool:
        return self in FINAL_JOB_STATUSES


FINAL_JOB_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED}
)

JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.CREATED: frozenset(
        {
            JobStatus.PENDING,
            JobStatus.SKIPPED,
            JobStatus.MANUAL,
            JobStatus.BLOCKED,
            JobStatus.CANCELED,
        }
    ),
    JobStatus.MANUAL: frozenset({JobStatus.PENDING, JobStatus.SKIPPED, JobStatus.CANCELED}),
    JobStatus.BLOCKED: frozenset({JobStatus.PENDING, JobStatus.SKIPPED, JobStatus.CANCELED}),
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.CANCELED, JobStatus.SKIPPED}),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.SUCCESS,
            JobStatus.FAILED,
            JobStatus.CANCELED,
            JobStatus.PENDING,
            JobStatus.BLOCKED,
        }
    ),
    JobStatus.SUCCESS: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
    JobStatus.SKIPPED: frozenset(),
}
"""Allowed moves. RUNNING → PENDING is a retry (a new attempt); PENDING → SKIPPED is a job
superseded in a `newest-wins` concurrency group; RUNNING → BLOCKED is a deploy job handed
back while its deployment waits for approvals (BLOCKED → PENDING once decided)."""


class IllegalTransition(Exception):
    """A job was asked to move to a state its current state does not allow."""

    def __init__(self, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"a job cannot move from {current} to {target}")
        self.current = current
        self.target = target


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise IllegalTransition unless `current → target` is allowed."""
    if target not in JOB_TRANSITIONS[current]:
        raise IllegalTransition(current, target)


class RunStatus(StrEnum):
    """A run's status. It is never stored on its own: it is derived from the jobs."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    """No job was created: `[skip ci]`, or no job matched the event."""


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What run_status needs to know about one job."""

    status: JobStatus
    allow_failure: bool = False


def run_status(jobs: Iterable[JobOutcome]) -> RunStatus:
    """Merge job statuses into the run's status.

    Priority, highest first: anything still moving makes the run `running` (or `queued` if
    nothing has started); then `canceled`; then `failed` (a failed job with allow_failure
    does not count); otherwise `success`. A run with no jobs is `skipped`. Jobs left in
    `manual` do not hold the run open, as in GitLab, where manual jobs are optional.
    """
    outcomes = list(jobs)
    if not outcomes:
        return RunStatus.SKIPPED
    statuses = {o.status for o in outcomes}
    if statuses & {JobStatus.RUNNING}:
        return RunStatus.RUNNING
    waiting = statuses & {JobStatus.CREATED, JobStatus.PENDING, JobStatus.BLOCKED}
    if waiting:
        started = statuses - {JobStatus.CREATED, JobStatus.PENDING, JobStatus.MANUAL}
        return RunStatus.RUNNING if started else RunStatus.QUEUED
    if JobStatus.CANCELED in statuses:
        return RunStatus.CANCELED
    if any(o.status is JobStatus.FAILED and not o.allow_failure for o in outcomes):
        return RunStatus.FAILED
    if statuses <= {JobStatus.SKIPPED, JobStatus.MANUAL}:
        return RunStatus.SKIPPED
    return RunStatus.SUCCESS
