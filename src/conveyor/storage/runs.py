"""Runs and their jobs in the database: created from a plan in one transaction,
deduplicated by their UUIDv5 key, with their status derived from their jobs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert as sa_insert
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.domain import events as types
from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.status import JobOutcome, JobStatus, RunStatus, run_status
from conveyor.ids import new_id, run_dedupe_key
from conveyor.pipeline.plan import Plan, job_to_json
from conveyor.pipeline.progress import Move
from conveyor.storage import events
from conveyor.storage.database import insert_for
from conveyor.storage.projects import ProjectRecord, TeamRecord, project_of, team_of
from conveyor.storage.tables import Job, JobAttempt, Project, Run, Team


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as storage hands it out."""

    id: uuid.UUID
    team_id: uuid.UUID
    project_id: uuid.UUID
    event: str
    ref: str
    sha: str
    title: str | None
    author: str | None
    reasons: list[Any]
    status_reported: str | None
    """What was last queued as its commit status (`overall|required`)."""
    created_at: datetime
    received_at: datetime | None
    finished_at: datetime | None
    required_teams: list[str] | None
    final_status: str | None
    traceparent: str | None = None
    """The trace it was started in (observability.tracing)."""


def run_of(row: Run) -> RunRecord:
    return RunRecord(
        id=row.id,
        team_id=row.team_id,
        project_id=row.project_id,
        event=row.event,
        ref=row.ref,
        sha=row.sha,
        title=row.title,
        author=row.author,
        reasons=list(row.reasons or ()),
        status_reported=row.status_reported,
        created_at=as_utc(row.created_at),
        received_at=as_utc(row.received_at) if row.received_at else None,
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        required_teams=[str(t) for t in row.required_teams] if row.required_teams else None,
        final_status=row.final_status,
        traceparent=row.traceparent,
    )


@dataclass(frozen=True, slots=True)
class CreatedRun:
    run_id: uuid.UUID
    created: bool
    """False when an existing run with the same dedupe key was returned instead."""
    jobs: Mapping[str, uuid.UUID] = field(default_factory=dict)
    """The new run's job ids by name (empty when the run existed)."""


async def create_run(
    session: AsyncSession,
    project: ProjectRecord,
    plan: Plan,
    *,
    pipeline: str,
    initial: Sequence[Move] = (),
    received_at: datetime | None = None,
    traceparent: str | None = None,
) -> CreatedRun:
    """Store a run and its planned jobs, or return the run that already exists for the same
    (project, event, ref, sha, pipeline). A canceled run does not count as a match.

    Jobs start in `created`, or where `initial` moves them (the scheduler's first
    progress decision, stored with the insert instead of read back and updated). The run
    is inserted with ON CONFLICT DO NOTHING on its dedupe key, so a lost race costs no
    error and leaves the caller's transaction usable: three statements for a new run.
    """
    event = plan.event
    key = run_dedupe_key(
        str(project.id), event.effective_kind.value, event.ref, event.sha, pipeline
    )
    run_id = new_id()
    now = utcnow()
    stored = await session.scalar(
        insert_for(session)(Run)
        .values(
            id=run_id,
            team_id=project.team_id,
            project_id=project.id,
            event=event.effective_kind.value,
            ref=event.ref,
            sha=event.sha,
            title=event.message.strip().partition("\n")[0][:300] or None,
            author=event.author[:200] or None,
            dedupe_key=key,
            reasons=list(plan.trigger.reasons),
            required_teams=list(plan.required_teams) or None,
            created_at=now,
            received_at=received_at or now,
            traceparent=traceparent,
        )
        .on_conflict_do_nothing()
        .returning(Run.id)
    )
    if stored is None:
        existing = await session.scalar(select(Run.id).where(Run.dedupe_key == key))
        if existing is None:  # pragma: no cover - a conflict on another key: a bug
            raise RuntimeError(f"run {key} conflicts, but no run holds its key")
        return CreatedRun(existing, created=False)
    now = utcnow()
    moves = {move.name: move for move in initial}
    ids = {job.name: new_id() for job in plan.jobs}
    rows: list[dict[str, Any]] = []
    for job in plan.jobs:
        move = moves.get(job.name)
        status = move.status if move else JobStatus.CREATED
        rows.append(
            {
                "id": ids[job.name],
                "team_id": project.team_id,
                "run_id": run_id,
                "name": job.name,
                "status": status.value,
                "spec": job_to_json(job),
                "concurrency_group": job.concurrency.group if job.concurrency else None,
                "reason": move.reason if move else "",
                "queued_at": now if status is JobStatus.PENDING else None,
                "finished_at": now if move and status is not JobStatus.PENDING else None,
                "created_at": now,
            }
        )
    if rows:
        await session.execute(sa_insert(Job), rows)
    facts = events.RunFacts(
        run_id, project.team_id, project.id, event.effective_kind.value, event.ref, event.sha, now
    )
    await events.run_event(session, types.RUN_QUEUED, facts, RunStatus.QUEUED.value, None)
    return CreatedRun(run_id, created=True, jobs=ids)


async def derived_status(session: AsyncSession, run_id: uuid.UUID) -> RunStatus:
    """The run's status, computed from its jobs by domain.status.run_status."""
    return (await derived_statuses(session, [run_id]))[run_id]


async def derived_statuses(
    session: AsyncSession, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RunStatus]:
    """Each run's status from its jobs, for a page of runs in one query."""
    if not run_ids:
        return {}
    rows = await session.execute(
        select(Job.run_id, Job.status, Job.spec["allow_failure"]).where(Job.run_id.in_(run_ids))
    )
    outcomes: dict[uuid.UUID, list[JobOutcome]] = {run_id: [] for run_id in run_ids}
    for run_id, status, allow in rows.all():
        outcomes[run_id].append(JobOutcome(JobStatus(status), bool(allow)))
    return {run_id: run_status(found) for run_id, found in outcomes.items()}


MOVING = (JobStatus.CREATED, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.BLOCKED)
"""Job statuses that keep a run open (domain.status.run_status)."""


@dataclass(frozen=True)
class Finished:
    run_id: uuid.UUID
    team_id: uuid.UUID
    project_id: uuid.UUID
    status: RunStatus


async def newly_finished(
    session: AsyncSession, since: datetime, now: datetime | None = None, limit: int = 500
) -> list[Finished]:
    """The runs created after `since` that finished and are not marked so yet, marked now
    by one guarded UPDATE: whichever replica marks a run first counts it, once. Four
    statements however many runs finished (the candidates, the marks, their jobs'
    statuses, their events), and one per status kept (`final_status`)."""
    moment = now or utcnow()
    moving = [s.value for s in MOVING]
    candidates = list(
        await session.scalars(
            select(Run.id)
            .where(
                Run.finished_at.is_(None),
                Run.created_at > since,
                ~select(Job.id).where(Job.run_id == Run.id, Job.status.in_(moving)).exists(),
            )
            .limit(limit)
        )
    )
    if not candidates:
        return []
    marked = (
        await session.execute(
            update(Run)
            .where(Run.id.in_(candidates), Run.finished_at.is_(None))
            .values(finished_at=moment)
            .returning(
                Run.id, Run.team_id, Run.project_id, Run.event, Run.ref, Run.sha, Run.created_at
            )
            .execution_options(synchronize_session=False)
        )
    ).all()
    if not marked:
        return []
    statuses = await derived_statuses(session, [row[0] for row in marked])
    out: list[Finished] = []
    by_status: dict[RunStatus, list[uuid.UUID]] = {}
    for row in sorted(marked, key=lambda r: r[0]):  # UUIDv7: in the order they were made
        status = statuses[row[0]]
        out.append(Finished(row[0], row[1], row[2], status))
        by_status.setdefault(status, []).append(row[0])
        await events.run_event(
            session, types.RUN_FINISHED, events.RunFacts(*row), status.value, moment
        )
    for status, ids in by_status.items():  # a statement per status, not per run
        await session.execute(
            update(Run)
            .where(Run.id.in_(ids))
            .values(final_status=status.value)
            .execution_options(synchronize_session=False)
        )
    return out


async def reopen(session: AsyncSession, job_id: uuid.UUID) -> None:
    """A manual job of a finished run was started: its status is derived again."""
    run_id = select(Job.run_id).where(Job.id == job_id).scalar_subquery()
    await session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(final_status=None)
        .execution_options(synchronize_session=False)
    )


async def release_dedupe_key(session: AsyncSession, run_id: uuid.UUID) -> None:
    """Called when a run is canceled: the same commit may start a new run."""
    run = await session.get(Run, run_id)
    if run is not None:
        run.dedupe_key = None


# -- what the API reads ----------------------------------------------------------------


async def with_project(
    session: AsyncSession, run_id: uuid.UUID
) -> tuple[RunRecord, ProjectRecord, TeamRecord] | None:
    row = (
        await session.execute(
            select(Run, Project, Team)
            .join(Project, Project.id == Run.project_id)
            .join(Team, Team.id == Run.team_id)
            .where(Run.id == run_id)
        )
    ).first()
    if row is None:
        return None
    return run_of(row[0]), project_of(row[1]), team_of(row[2])


@dataclass(frozen=True)
class RunQuery:
    """Which runs a page lists."""

    team_id: uuid.UUID | None
    """Only this team's runs (none for None), unless `every_team`."""
    every_team: bool = False
    project_id: uuid.UUID | None = None
    ref: str | None = None
    event: str | None = None
    status: RunStatus | None = None
    """Only runs that may have this status: finished ones that had it, and those whose
    status is not kept (still running, or reopened); the caller derives the latter's."""


async def newest_first(
    session: AsyncSession, query: RunQuery, before: uuid.UUID | None, limit: int
) -> list[tuple[RunRecord, ProjectRecord, TeamRecord]]:
    """Up to `limit` runs older than `before` (UUIDv7 ids sort by time), newest first."""
    statement = (
        select(Run, Project, Team)
        .join(Project, Project.id == Run.project_id)
        .join(Team, Team.id == Run.team_id)
        .order_by(Run.id.desc())
    )
    if query.project_id is not None:
        statement = statement.where(Run.project_id == query.project_id)
    if not query.every_team:
        statement = statement.where(Run.team_id == query.team_id)
    if query.ref is not None:
        statement = statement.where(Run.ref == query.ref)
    if query.event is not None:
        statement = statement.where(Run.event == query.event)
    if query.status is not None:
        unknown = Run.final_status.is_(None)
        if query.status in (RunStatus.QUEUED, RunStatus.RUNNING):
            statement = statement.where(unknown)
        else:
            statement = statement.where(unknown | (Run.final_status == query.status.value))
    if before is not None:
        statement = statement.where(Run.id < before)
    rows = await session.execute(statement.limit(limit))
    return [(run_of(r), project_of(p), team_of(t)) for r, p, t in rows.all()]


async def ref_of(session: AsyncSession, run_id: uuid.UUID) -> str | None:
    """The git ref a run built (None for an unknown run)."""
    found: str | None = await session.scalar(select(Run.ref).where(Run.id == run_id))
    return found


async def coverage(session: AsyncSession, run_id: uuid.UUID) -> float | None:
    """The line coverage a run reported: the highest of its jobs' last attempts' (None
    when no job reported one)."""
    rows = await session.execute(
        select(JobAttempt.job_id, JobAttempt.number, JobAttempt.reports)
        .join(Job, Job.id == JobAttempt.job_id)
        .where(Job.run_id == run_id)
    )
    last: dict[uuid.UUID, tuple[int, Any]] = {}
    for job_id, number, reports in rows.all():
        if job_id not in last or number > last[job_id][0]:
            last[job_id] = (number, (reports or {}).get("coverage_percent"))
    found = [float(value) for _, value in last.values() if isinstance(value, int | float)]
    return max(found) if found else None


async def allowed_failures(session: AsyncSession, run_id: uuid.UUID) -> list[str]:
    """The jobs of a run that failed and were allowed to (`allow_failure`), by name."""
    rows = await session.execute(
        select(Job.name, Job.spec)
        .where(Job.run_id == run_id, Job.status == JobStatus.FAILED.value)
        .order_by(Job.name)
    )
    return [name for name, spec in rows.all() if (spec or {}).get("allow_failure")]
