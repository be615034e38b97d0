"""Runs and job logs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from conveyor.api.auth import Principal
from conveyor.api.errors import ApiError
from conveyor.api.schemas import AttemptOut, JobOut, RunFilter, RunOut, RunPage, RunSummary
from conveyor.api.state import Caller, State
from conveyor.domain.roles import Role
from conveyor.domain.status import JobStatus, RunStatus
from conveyor.storage import jobs as job_rows
from conveyor.storage import runs
from conveyor.storage.database import Session
from conveyor.storage.logs import read_log
from conveyor.storage.runs import RunQuery, derived_status
from conveyor.storage.tables import Project, Run, Team, as_utc, iso

router = APIRouter(prefix="/api/v1", tags=["runs"])


async def _summary(session: Session, run: Run, project: Project, team: Team) -> RunSummary:
    return _summary_of(run, project, team, await derived_status(session, run.id))


def _summary_of(run: Run, project: Project, team: Team, status: RunStatus) -> RunSummary:
    return RunSummary(
        id=run.id,
        team=team.name,
        project=project.name,
        status=status.value,
        event=run.event,
        ref=run.ref,
        sha=run.sha,
        title=run.title,
        author=run.author,
        created_at=as_utc(run.created_at).isoformat(),
        finished_at=iso(run.finished_at),
    )


async def run_row(session: Session, run_id: uuid.UUID) -> tuple[Run, Project, Team]:
    found = await runs.with_project(session, run_id)
    if found is None:
        raise ApiError(404, "not_found", "no such run")
    return found


async def load_run(session: Session, run_id: uuid.UUID) -> RunOut:
    run, project, team = await run_row(session, run_id)
    summary = await _summary(session, run, project, team)
    jobs, attempts = await runs.jobs_and_attempts(session, run_id)
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
                queued_at=iso(j.queued_at),
                started_at=iso(j.started_at),
                finished_at=iso(j.finished_at),
                history=history.get(j.id, []),
            )
            for j in jobs
        ],
    )


async def run_page(
    session: Session,
    who: Principal,
    filters: RunFilter,
    *,
    project_id: uuid.UUID | None = None,
) -> RunPage:
    """Runs, newest first (UUIDv7 ids sort by time); `next_cursor` continues the list.
    The status filter is applied after deriving each run's status."""
    ref, limit, status, cursor = filters.ref, filters.limit, filters.status, filters.cursor
    query = RunQuery(
        team_id=who.team_id,
        every_team=who.is_admin,
        project_id=project_id,
        ref=None if ref is None else ref if ref.startswith("refs/") else f"refs/heads/{ref}",
        event=filters.event,
        status=_status_of(status),
    )
    items: list[RunSummary] = []
    last: uuid.UUID | None = None
    # A status filter reads more runs per round: the matching ones may be few.
    chunk = limit if status is None else max(limit, FILTERED_CHUNK)
    while len(items) < limit:
        rows = await runs.newest_first(session, query, cursor, chunk)
        if not rows:
            return RunPage(items=items, next_cursor=None)
        # A finished run's status is kept; only the others' are derived from their jobs.
        unknown = [run.id for run, _, _ in rows if run.final_status is None]
        statuses = await runs.derived_statuses(session, unknown)
        statuses |= {r.id: RunStatus(r.final_status) for r, _, _ in rows if r.final_status}
        for run, project, team in rows:
            cursor = last = run.id
            summary = _summary_of(run, project, team, statuses[run.id])
            if status is None or summary.status == status:
                items.append(summary)
                if len(items) == limit:
                    break
    return RunPage(items=items, next_cursor=str(last) if last else None)


FILTERED_CHUNK = 500


def _status_of(text: str | None) -> RunStatus | None:
    """A filter's status, when it names one (another matches no run, as before)."""
    if text is None:
        return None
    try:
        return RunStatus(text)
    except ValueError:
        return None


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
        row = await job_rows.brief(session, job_id)
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
        row = await job_rows.brief(session, job_id)
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
        row = await job_rows.brief(session, job_id)
    if row is None or not who.can_see(row.team_id):
        raise ApiError(404, "not_found", "no such job")

    async def events() -> AsyncIterator[str]:
        position = offset
        while not await request.is_disconnected():
            async with state.db.transaction() as session:
                data = await read_log(session, job_id, position)
                status = await job_rows.status_of(session, job_id)
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
