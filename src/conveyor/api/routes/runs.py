"""Runs and job logs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.api.auth import Principal
from conveyor.api.errors import ApiError
from conveyor.api.schemas import AttemptOut, JobOut, RunFilter, RunOut, RunPage, RunSummary
from conveyor.api.state import Caller, State
from conveyor.domain.roles import Role
from conveyor.domain.status import JobStatus
from conveyor.storage.logs import read_log
from conveyor.storage.runs import derived_status
from conveyor.storage.tables import Job, JobAttempt, Project, Run, Team, as_utc

router = APIRouter(prefix="/api/v1", tags=["runs"])


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment else None


async def _summary(session: AsyncSession, run: Run, project: Project, team: Team) -> RunSummary:
    return RunSummary(
        id=run.id,
        team=team.name,
        project=project.name,
        status=(await derived_status(session, run.id)).value,
        event=run.event,
        ref=run.ref,
        sha=run.sha,
        created_at=as_utc(run.created_at).isoformat(),
    )


async def run_row(session: AsyncSession, run_id: uuid.UUID) -> tuple[Run, Project, Team]:
    row = (
        await session.execute(
            select(Run, Project, Team)
            .join(Project, Project.id == Run.project_id)
            .join(Team, Team.id == Run.team_id)
            .where(Run.id == run_id)
        )
    ).first()
    if row is None:
        raise ApiError(404, "not_found", "no such run")
    return row[0], row[1], row[2]


async def load_run(session: AsyncSession, run_id: uuid.UUID) -> RunOut:
    run, project, team = await run_row(session, run_id)
    summary = await _summary(session, run, project, team)
    jobs = (
        await session.scalars(
            select(Job).where(Job.run_id == run_id).order_by(Job.created_at, Job.id)
        )
    ).all()
    attempts = (
        await session.scalars(
            select(JobAttempt)
            .where(JobAttempt.job_id.in_([j.id for j in jobs]))
            .order_by(JobAttempt.number)
        )
    ).all()
    history: dict[uuid.UUID, list[AttemptOut]] = {}
    for a in attempts:
        history.setdefault(a.job_id, []).append(
            AttemptOut(
                number=a.number,
                status=a.status,
                exit_code=a.exit_code,
                failure_class=a.failure_class,
                detail=a.detail,
                reports=a.reports,
            )
        )
    return RunOut(
        **summary.model_dump(),
        jobs=[
            JobOut(
                id=j.id,
                name=j.name,
                stage=str(j.spec.get("stage", "")),
                status=j.status,
                attempts=j.attempt,
                exit_code=j.exit_code,
                failure_class=j.failure_class,
                reason=j.reason,
                queued_at=_iso(j.queued_at),
                started_at=_iso(j.started_at),
                finished_at=_iso(j.finished_at),
                history=history.get(j.id, []),
            )
            for j in jobs
        ],
    )


async def run_page(
    session: AsyncSession,
    who: Principal,
    filters: RunFilter,
    *,
    project_id: uuid.UUID | None = None,
) -> RunPage:
    """Runs, newest first (UUIDv7 ids sort by time); `next_cursor` continues the list.
    The status filter is applied after deriving each run's status."""
    query = (
        select(Run, Project, Team)
        .join(Project, Project.id == Run.project_id)
        .join(Team, Team.id == Run.team_id)
        .order_by(Run.id.desc())
    )
    if project_id is not None:
        query = query.where(Run.project_id == project_id)
    if not who.is_admin:
        query = query.where(Run.team_id == who.team_id)
    ref, limit, status, cursor = filters.ref, filters.limit, filters.status, filters.cursor
    if ref is not None:
        query = query.where(Run.ref == (ref if ref.startswith("refs/") else f"refs/heads/{ref}"))
    if filters.event is not None:
        query = query.where(Run.event == filters.event)
    items: list[RunSummary] = []
    last: uuid.UUID | None = None
    while len(items) < limit:
        page = query if cursor is None else query.where(Run.id < cursor)
        rows = (await session.execute(page.limit(limit))).all()
        if not rows:
            return RunPage(items=items, next_cursor=None)
        for run, project, team in rows:
            cursor = last = run.id
            summary = await _summary(session, run, project, team)
            if status is None or summary.status == status:
                items.append(summary)
                if len(items) == limit:
                    break
    return RunPage(items=items, next_cursor=str(last) if last else None)


@router.get("/runs")
async def list_runs(state: State, who: Caller, filters: Annotated[RunFilter, Query()]) -> RunPage:
    """Runs of every team the token can see, newest first."""
    async with state.db.transaction() as session:
        return await run_page(session, who, filters)


@router.get("/runs/{run_id}")
async def get_run(run_id: uuid.UUID, state: State, who: Caller) -> RunOut:
    async with state.db.transaction() as session:
        run, _, _ = await run_row(session, run_id)
        who.require(run.team_id, Role.VIEWER, "run")
        return await load_run(session, run_id)


@router.post("/runs/{run_id}/cancel")
async def cancel_run(run_id: uuid.UUID, state: State, who: Caller) -> RunOut:
    async with state.db.transaction() as session:
        run, _, _ = await run_row(session, run_id)
        who.require(run.team_id, Role.DEVELOPER, "run")
    await state.scheduler.cancel_run(run_id)
    async with state.db.transaction() as session:
        return await load_run(session, run_id)


@router.get("/jobs/{job_id}/log")
async def job_log(
    job_id: uuid.UUID, state: State, who: Caller, offset: Annotated[int, Query(ge=0)] = 0
) -> Response:
    """The job's log from byte `offset`; `X-Next-Offset` says where to continue, and
    `X-Job-Status` whether more may come."""
    async with state.db.transaction() as session:
        row = (
            await session.execute(select(Job.team_id, Job.status).where(Job.id == job_id))
        ).first()
        if row is None or not who.can_see(row.team_id):
            raise ApiError(404, "not_found", "no such job")
        data = await read_log(session, job_id, offset)
    return Response(
        content=data,
        media_type="text/plain; charset=utf-8",
        headers={"X-Next-Offset": str(offset + len(data)), "X-Job-Status": row.status},
    )


@router.post("/jobs/{job_id}/play")
async def play_job(job_id: uuid.UUID, state: State, who: Caller) -> RunOut:
    """Start a manual job."""
    async with state.db.transaction() as session:
        row = (
            await session.execute(select(Job.team_id, Job.run_id).where(Job.id == job_id))
        ).first()
        if row is None or not who.can_see(row.team_id):
            raise ApiError(404, "not_found", "no such job")
        who.require(row.team_id, Role.DEVELOPER, "job")
    await state.scheduler.play(job_id)
    async with state.db.transaction() as session:
        return await load_run(session, row.run_id)


STREAM_POLL_S = 0.25


@router.get("/jobs/{job_id}/log/stream")
async def job_log_stream(
    job_id: uuid.UUID,
    request: Request,
    state: State,
    who: Caller,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """The job's log as server-sent events: `log` events carry `{offset, text}` as the
    runner sends it (a quarter of a second behind at most, plus the runner's own flush
    interval); one `end` event carries the job's final status."""
    async with state.db.transaction() as session:
        row = (await session.execute(select(Job.team_id).where(Job.id == job_id))).first()
    if row is None or not who.can_see(row.team_id):
        raise ApiError(404, "not_found", "no such job")

    async def events() -> AsyncIterator[str]:
        position = offset
        while not await request.is_disconnected():
            async with state.db.transaction() as session:
                data = await read_log(session, job_id, position)
                status = await session.scalar(select(Job.status).where(Job.id == job_id))
            if data:
                text = data.decode("utf-8", "replace")
                yield f"event: log\ndata: {json.dumps({'offset': position, 'text': text})}\n\n"
                position += len(data)
                continue
            if status is None or JobStatus(status).is_final:
                yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                return
            await asyncio.sleep(STREAM_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream")
