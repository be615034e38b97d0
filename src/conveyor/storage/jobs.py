"""Job status changes as guarded updates.

Every move is one `UPDATE jobs SET status = :to … WHERE id = :id AND status IN (:allowed)`
(the allowed sources come from domain.status.JOB_TRANSITIONS), optionally also guarded by
the fencing token. If no row changed, the job was not in a state that allows the move
(or the fence is stale) and TransitionRejected is raised: two replicas can never both move
the same job.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.errors import Conflict
from conveyor.domain.status import JOB_TRANSITIONS, JobStatus
from conveyor.storage.projects import ProjectRecord, TeamRecord, project_of, team_of
from conveyor.storage.runs import RunRecord, run_of
from conveyor.storage.tables import Job, JobAttempt, Project, Run, Secret, Team
from conveyor.storage.values import record_of


class TransitionRejected(Conflict):
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


async def unblock(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """A `blocked` job back to pending (a job in any other state is left alone)."""
    return await try_move(
        session,
        job_id,
        JobStatus.PENDING,
        guard=Job.status == JobStatus.BLOCKED.value,
        queued_at=utcnow(),
    )


# -- what the scheduler reads and writes about jobs ------------------------------------


@dataclass(frozen=True, slots=True)
class JobState:
    """A job of a run as `advance` needs it."""

    id: uuid.UUID
    name: str
    status: JobStatus
    spec: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as storage hands it out (moves go through `move_job`'s guarded UPDATE)."""

    id: uuid.UUID
    team_id: uuid.UUID
    run_id: uuid.UUID
    name: str
    status: str
    spec: dict[str, Any]
    concurrency_group: str | None
    attempt: int
    fence: int
    runner_id: uuid.UUID | None
    lease_expires_at: datetime | None
    exit_code: int | None
    failure_class: str | None
    reason: str
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime


def job_of(row: Job) -> JobRecord:
    return JobRecord(
        id=row.id,
        team_id=row.team_id,
        run_id=row.run_id,
        name=row.name,
        status=row.status,
        spec=dict(row.spec),
        concurrency_group=row.concurrency_group,
        attempt=row.attempt,
        fence=row.fence,
        runner_id=row.runner_id,
        lease_expires_at=_utc(row.lease_expires_at),
        exit_code=row.exit_code,
        failure_class=row.failure_class,
        reason=row.reason,
        queued_at=_utc(row.queued_at),
        started_at=_utc(row.started_at),
        finished_at=_utc(row.finished_at),
        created_at=as_utc(row.created_at),
    )


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt of a job (a retried job has one per try)."""

    job_id: uuid.UUID
    number: int
    status: str
    exit_code: int | None
    failure_class: str | None
    detail: str
    reports: dict[str, Any]


async def jobs_and_attempts(
    session: AsyncSession, run_id: uuid.UUID
) -> tuple[list[JobRecord], list[AttemptRecord]]:
    """The run's jobs in the order they were planned, and all their attempts by number."""
    jobs = [
        job_of(row)
        for row in await session.scalars(
            select(Job).where(Job.run_id == run_id).order_by(Job.created_at, Job.id)
        )
    ]
    attempts = [
        record_of(AttemptRecord, row)
        for row in await session.scalars(
            select(JobAttempt)
            .where(JobAttempt.job_id.in_([j.id for j in jobs]))
            .order_by(JobAttempt.number)
        )
    ]
    return jobs, attempts


def _utc(moment: datetime | None) -> datetime | None:
    return as_utc(moment) if moment is not None else None


async def job(session: AsyncSession, job_id: uuid.UUID) -> JobRecord | None:
    found = await session.get(Job, job_id)
    return job_of(found) if found is not None else None


async def has_created(session: AsyncSession, run_id: uuid.UUID) -> bool:
    """Whether any job of the run is still in `created` (one indexed query)."""
    waiting = await session.scalar(
        select(Job.id).where(Job.run_id == run_id, Job.status == JobStatus.CREATED.value).limit(1)
    )
    return waiting is not None


async def run_jobs(session: AsyncSession, run_id: uuid.UUID) -> list[JobState]:
    rows = await session.execute(
        select(Job.id, Job.name, Job.status, Job.spec).where(Job.run_id == run_id)
    )
    return [JobState(r.id, r.name, JobStatus(r.status), r.spec) for r in rows.all()]


async def unfinished_of_run(session: AsyncSession, run_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.execute(select(Job.id, Job.status).where(Job.run_id == run_id))
    return [job_id for job_id, status in rows.all() if not JobStatus(status).is_final]


async def interruptible_on_ref(
    session: AsyncSession, project_id: uuid.UUID, ref: str, newest: uuid.UUID
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(job, run) of the unfinished `interruptible` jobs of the project's other runs on
    `ref`. Only those are read (the JSON test is in SQL): a backlog of others on the ref
    costs nothing per new run."""
    unfinished = [s.value for s in JobStatus if not s.is_final]
    rows = await session.execute(
        select(Job.id, Job.run_id)
        .join(Run, Run.id == Job.run_id)
        .where(
            Run.project_id == project_id,
            Run.ref == ref,
            Run.id != newest,
            Job.status.in_(unfinished),
            Job.spec["interruptible"].as_boolean().is_(True),
        )
    )
    return [(job_id, run_id) for job_id, run_id in rows.all()]


async def pending_in_group(
    session: AsyncSession, team_id: uuid.UUID, group: str, besides: uuid.UUID
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(job, run) of the other pending jobs of a team's concurrency group."""
    rows = await session.execute(
        select(Job.id, Job.run_id).where(
            Job.team_id == team_id,
            Job.concurrency_group == group,
            Job.status == JobStatus.PENDING.value,
            Job.id != besides,
        )
    )
    return [(job_id, run_id) for job_id, run_id in rows.all()]


@dataclass(frozen=True, slots=True)
class JobBrief:
    """A job's team and run, and who holds it under which fence, in which status."""

    team_id: uuid.UUID
    run_id: uuid.UUID
    status: JobStatus
    fence: int
    runner_id: uuid.UUID | None
    name: str = ""


async def brief(session: AsyncSession, job_id: uuid.UUID) -> JobBrief | None:
    row = (
        await session.execute(
            select(Job.team_id, Job.run_id, Job.status, Job.fence, Job.runner_id, Job.name).where(
                Job.id == job_id
            )
        )
    ).first()
    if row is None:
        return None
    status = JobStatus(row.status)
    return JobBrief(row.team_id, row.run_id, status, row.fence, row.runner_id, row.name)


async def status_of(session: AsyncSession, job_id: uuid.UUID) -> JobStatus | None:
    found = await session.scalar(select(Job.status).where(Job.id == job_id))
    return JobStatus(found) if found is not None else None


async def with_run(
    session: AsyncSession, job_id: uuid.UUID
) -> tuple[JobRecord, RunRecord, ProjectRecord, TeamRecord]:
    """The job with its run, project and team (the job exists)."""
    job_row, run, project, team = (
        await session.execute(
            select(Job, Run, Project, Team)
            .join(Run, Run.id == Job.run_id)
            .join(Project, Project.id == Run.project_id)
            .join(Team, Team.id == Project.team_id)
            .where(Job.id == job_id)
        )
    ).one()
    return job_of(job_row), run_of(run), project_of(project), team_of(team)


async def renew(
    session: AsyncSession,
    job_id: uuid.UUID,
    fence: int,
    runner_id: uuid.UUID | None,
    until: datetime,
) -> bool:
    """Extend a running job's lease held at `fence` (by `runner_id`, when given)."""
    guard = [Job.id == job_id, Job.fence == fence, Job.status == JobStatus.RUNNING.value]
    if runner_id is not None:
        guard.append(Job.runner_id == runner_id)
    result = await session.execute(
        update(Job)
        .where(*guard)
        .values(lease_expires_at=until)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Ended:
    """What the attempt row needs of a job that ended in one UPDATE … RETURNING."""

    id: uuid.UUID
    team_id: uuid.UUID
    run_id: uuid.UUID
    attempt: int
    runner_id: uuid.UUID | None
    started_at: datetime | None
    stage: str = ""


async def end_running(
    session: AsyncSession,
    job_id: uuid.UUID,
    fence: int,
    runner_id: uuid.UUID | None,
    status: JobStatus,
    **values: Any,
) -> Ended | None:
    """End a running job held at `fence` in one guarded UPDATE that returns what the
    attempt row needs; None when the job is not in that state."""
    guard = [Job.id == job_id, Job.fence == fence, Job.status == JobStatus.RUNNING.value]
    if runner_id is not None:
        guard.append(Job.runner_id == runner_id)
    ended = await session.execute(
        update(Job)
        .where(*guard)
        .values(status=status.value, finished_at=utcnow(), lease_expires_at=None, **values)
        .returning(
            Job.id,
            Job.team_id,
            Job.run_id,
            Job.attempt,
            Job.runner_id,
            Job.started_at,
            Job.spec["stage"].as_string(),
        )
        .execution_options(synchronize_session=False)
    )
    row = ended.first()
    if row is None:
        return None
    job, team, run, attempt, runner, started, stage = row
    return Ended(job, team, run, attempt, runner, started, stage or "")


async def hand_back(
    session: AsyncSession, job_id: uuid.UUID, fence: int, target: JobStatus, reason: str
) -> bool:
    """A running job held at `fence` leaves its runner without ending: its lease is
    dropped and the attempt does not count (the next lease numbers it the same)."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.fence == fence, Job.status == JobStatus.RUNNING.value)
        .values(status=target.value, lease_expires_at=None, attempt=Job.attempt - 1, reason=reason)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def record_attempt(
    session: AsyncSession,
    job: JobRecord | Ended,
    status: JobStatus,
    *,
    exit_code: int | None,
    failure_class: str | None,
    detail: str,
    reports: dict[str, Any],
) -> None:
    """The attempt's row (written with the transaction that ends or retries the job)."""
    session.add(
        JobAttempt(
            team_id=job.team_id,
            job_id=job.id,
            number=job.attempt,
            status=status.value,
            exit_code=exit_code,
            failure_class=failure_class,
            detail=detail,
            reports=reports,
            runner_id=job.runner_id,
            started_at=job.started_at,
        )
    )


async def expired_leases(
    session: AsyncSession, moment: datetime, *, skip_locked: bool
) -> list[tuple[uuid.UUID, int]]:
    """(job, fence) of the running jobs whose lease ran out before `moment`."""
    query = select(Job.id, Job.fence).where(
        Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < moment
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return [(job_id, fence) for job_id, fence in (await session.execute(query)).all()]


@dataclass(frozen=True)
class Leased:
    """A leased job with everything its assignment names."""

    job: JobRecord
    run: RunRecord
    project: ProjectRecord
    team: TeamRecord
    secrets: list[Secret]


async def leased(session: AsyncSession, job_id: uuid.UUID) -> Leased:
    """The job with its run, project, team and the project's secrets, in one join."""
    rows = (
        await session.execute(
            select(Job, Run, Project, Team, Secret)
            .join(Run, Run.id == Job.run_id)
            .join(Project, Project.id == Run.project_id)
            .join(Team, Team.id == Job.team_id)
            .outerjoin(Secret, Secret.project_id == Project.id)
            .where(Job.id == job_id)
            .execution_options(populate_existing=True)
        )
    ).all()
    job_row, run, project, team, _ = rows[0]
    secrets = [r[4] for r in rows if r[4] is not None]
    return Leased(job_of(job_row), run_of(run), project_of(project), team_of(team), secrets)
