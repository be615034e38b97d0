"""Job status changes as guarded updates.

Every move is one `UPDATE jobs SET status = :to … WHERE id = :id AND status IN (:allowed)`
(the allowed sources come from domain.status.JOB_TRANSITIONS), optionally also guarded by
the fencing token. If no row changed, the job was not in a state that allows the move
(or the fence is stale) and TransitionRejected is raised: two replicas can never both move
the same job.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.domain.status import JOB_TRANSITIONS, JobStatus
from conveyor.storage.tables import Job


class TransitionRejected(Exception):
    """The job was not in a state (or at the fence) that allows the move."""

    def __init__(self, job_id: uuid.UUID, target: JobStatus, current: str | None) -> None:
        where = "does not exist" if current is None else f"is {current}"
        super().__init__(f"job {job_id} cannot move to {target}: it {where}")
        self.job_id = job_id
        self.target = target
        self.current = current


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """The statuses from which a job may move to `target`."""
    return frozenset(s for s, targets in JOB_TRANSITIONS.items() if target in targets)


async def move_job(
    session: AsyncSession,
    job_id: uuid.UUID,
    target: JobStatus,
    *,
    expect_fence: int | None = None,
    guard: ColumnElement[bool] | None = None,
    **values: Any,
) -> None:
    """Move a job to `target` and set `values`, in one guarded UPDATE.

    `expect_fence`, when given, must equal the job's current fencing token: a runner
    holding an older lease cannot finish a job that was handed to someone else. `guard`
    is a further condition the row must meet (evaluated in the same statement).
    """
    if not await try_move(
        session, job_id, target, expect_fence=expect_fence, guard=guard, **values
    ):
        current = await session.scalar(select(Job.status).where(Job.id == job_id))
        raise TransitionRejected(job_id, target, current)


async def try_move(
    session: AsyncSession,
    job_id: uuid.UUID,
    target: JobStatus,
    *,
    expect_fence: int | None = None,
    guard: ColumnElement[bool] | None = None,
    **values: Any,
) -> bool:
    """`move_job`'s UPDATE alone: True when the job moved, False when it was not in a
    state that allows the move (nothing else is read)."""
    allowed = [s.value for s in sources_of(target)]
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_(allowed))
        .values(status=target.value, **values)
    )
    if expect_fence is not None:
        statement = statement.where(Job.fence == expect_fence)
    if guard is not None:
        statement = statement.where(guard)
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
