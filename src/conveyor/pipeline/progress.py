"""What to do next with a job, given the statuses of the jobs it depends on.

A pure function, shared by the local runner and the server's scheduler, so that `when`,
failures upstream and manual jobs mean the same thing everywhere (GitLab's semantics: a
failed job skips what depends on it, `on_failure` runs only after a failure upstream,
`always` runs whatever happened)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from conveyor.domain.status import JobStatus
from conveyor.pipeline.plan import PlannedJob
from conveyor.pipeline.schema import When


class JobAction(StrEnum):
    WAIT = "wait"
    """A need has not finished."""
    RUN = "run"
    SKIP = "skip"
    MANUAL = "manual"
    """Park the job until a person starts it."""


@dataclass(frozen=True, slots=True)
class Next:
    action: JobAction
    reason: str = ""


_UNFINISHED = frozenset(
    {JobStatus.CREATED, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.BLOCKED}
)


def next_action(
    job: PlannedJob,
    ancestors: Iterable[str],
    statuses: Mapping[str, JobStatus],
    allow_failure: Mapping[str, bool],
    played: bool = False,
) -> Next:
    """Decide for a job still in `created`.

    `ancestors` are every job the job reaches through `needs`; `statuses` holds every
    job's current status, `allow_failure` whether a job's failure is tolerated; `played`
    is true once a person started a manual job.
    """
    waiting = [n for n in job.needs if statuses[n] in _UNFINISHED]
    if waiting:
        return Next(JobAction.WAIT, f"waits for {waiting[0]!r}")
    canceled = [n for n in job.needs if statuses[n] is JobStatus.CANCELED]
    if canceled:
        return Next(JobAction.SKIP, f"{canceled[0]!r} was canceled")
    failed = sorted(
        n for n in ancestors if statuses[n] is JobStatus.FAILED and not allow_failure.get(n, False)
    )
    if job.when is When.ALWAYS:
        return Next(JobAction.RUN, "when: always")
    if job.when is When.ON_FAILURE:
        if failed:
            return Next(JobAction.RUN, f"when: on_failure, and {failed[0]!r} failed")
        return Next(JobAction.SKIP, "when: on_failure, and nothing upstream failed")
    if failed:
        return Next(JobAction.SKIP, f"{failed[0]!r} failed")
    not_run = [n for n in job.needs if statuses[n] in (JobStatus.SKIPPED, JobStatus.MANUAL)]
    if not_run:
        return Next(JobAction.SKIP, f"needs {not_run[0]!r}, which did not run")
    if job.when is When.MANUAL and not played:
        return Next(JobAction.MANUAL, "when: manual; waits for a person")
    return Next(JobAction.RUN, "needs succeeded" if job.needs else "no needs")


@dataclass(frozen=True, slots=True)
class Move:
    """A job leaving `created`: to pending, skipped or manual, and why."""

    name: str
    status: JobStatus
    reason: str


STATUS_OF = {
    JobAction.RUN: JobStatus.PENDING,
    JobAction.SKIP: JobStatus.SKIPPED,
    JobAction.MANUAL: JobStatus.MANUAL,
}


def ancestor_sets(needs: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """Every job each job reaches through `needs`."""
    memo: dict[str, frozenset[str]] = {}

    def walk(name: str) -> frozenset[str]:
        if name not in memo:
            direct = needs.get(name, ())
            memo[name] = frozenset(direct).union(*(walk(n) for n in direct))
        return memo[name]

    for name in needs:
        walk(name)
    return memo


CANCELED_RUN = "the run was canceled"


def settle(
    created: Mapping[str, PlannedJob],
    needs: Mapping[str, Sequence[str]],
    statuses: dict[str, JobStatus],
    allow_failure: Mapping[str, bool],
    *,
    played: Collection[str] = (),
    canceled: bool = False,
    refuse: Callable[[PlannedJob], str | None] | None = None,
) -> list[Move]:
    """Every move the `created` jobs can make now, in order, repeated until nothing
    changes, so that skips cascade in one call. `needs` and `statuses` cover every job
    of the run; `statuses` is updated with the moves.

    `played` names the manual jobs a person started (they run like any other);
    `canceled` cancels every job still in `created`; `refuse`, when given, says why a
    job that would run cannot run here (`conveyor run` and a `deploy:` job): it is
    skipped with that reason, and what needs it follows."""
    ancestors = ancestor_sets(needs)
    moves: list[Move] = []
    changed = True
    while changed:
        changed = False
        for name, job in created.items():
            if statuses[name] is not JobStatus.CREATED:
                continue
            if canceled:
                move: Move | None = Move(name, JobStatus.CANCELED, CANCELED_RUN)
            else:
                move = _move(name, job, ancestors[name], statuses, allow_failure, name in played)
            if move is None:
                continue
            if move.status is JobStatus.PENDING and refuse is not None:
                refused = refuse(job)
                if refused is not None:
                    move = Move(name, JobStatus.SKIPPED, refused)
            statuses[name] = move.status
            moves.append(move)
            changed = True
    return moves


def _move(
    name: str,
    job: PlannedJob,
    ancestors: frozenset[str],
    statuses: Mapping[str, JobStatus],
    allow_failure: Mapping[str, bool],
    played: bool,
) -> Move | None:
    decision = next_action(job, ancestors, statuses, allow_failure, played=played)
    if decision.action is JobAction.WAIT:
        return None
    return Move(name, STATUS_OF[decision.action], decision.reason)
