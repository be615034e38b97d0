"""Runs and their jobs in the database: created from a plan in one transaction,
deduplicated by their UUIDv5 key, with their status derived from their jobs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.domain.status import JobOutcome, JobStatus, RunStatus, run_status
from conveyor.ids import run_dedupe_key
from conveyor.pipeline.plan import Plan, job_to_json
from conveyor.storage.tables import Job, Project, Run


@dataclass(frozen=True, slots=True)
class CreatedRun:
    run_id: uuid.UUID
    created: bool
    """False when an existing run with the same dedupe key was returned instead."""


async def create_run(
    session: AsyncSession, project: Project, plan: Plan, *, pipeline: str
) -> CreatedRun:
    """Store a run and its planned jobs, or return the run that already exists for the same
    (project, event, ref, sha, pipeline). A canceled run does not count as a match.

    Runs inside a SAVEPOINT, so a lost race on the unique key leaves the caller's
    transaction usable.
    """
    event = plan.event
    key = run_dedupe_key(
        str(project.id), event.effective_kind.value, event.ref, event.sha, pipeline
    )
    existing = await session.scalar(select(Run.id).where(Run.dedupe_key == key))
    if existing is not None:
        return CreatedRun(existing, created=False)
    run = Run(
        team_id=project.team_id,
        project_id=project.id,
        event=event.effective_kind.value,
        ref=event.ref,
        sha=event.sha,
        dedupe_key=key,
        reasons=list(plan.trigger.reasons),
    )
    try:
        async with session.begin_nested():
            session.add(run)
            await session.flush()
            session.add_all(
                Job(
                    team_id=project.team_id,
                    run_id=run.id,
                    name=job.name,
                    status=JobStatus.CREATED.value,
                    spec=job_to_json(job),
                    concurrency_group=job.concurrency.group if job.concurrency else None,
                )
                for job in plan.jobs
            )
            await session.flush()
    except IntegrityError:
        winner = await session.scalar(select(Run.id).where(Run.dedupe_key == key))
        if winner is None:
            raise
        return CreatedRun(winner, created=False)
    return CreatedRun(run.id, created=True)


async def derived_status(session: AsyncSession, run_id: uuid.UUID) -> RunStatus:
    """The run's status, computed from its jobs by domain.status.run_status."""
    rows = await session.execute(
        select(Job.status, Job.spec["allow_failure"]).where(Job.run_id == run_id)
    )
    return run_status(JobOutcome(JobStatus(status), bool(allow)) for status, allow in rows.all())


async def release_dedupe_key(session: AsyncSession, run_id: uuid.UUID) -> None:
    """Called when a run is canceled: the same commit may start a new run."""
    run = await session.get(Run, run_id)
    if run is not None:
        run.dedupe_key = None
