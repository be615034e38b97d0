"""Runs and job logs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from conveyor.api.errors import ApiError
from conveyor.api.state import Caller, State
from conveyor.domain.status import JobStatus
from conveyor.protocol.api import RunFilter, RunOut, RunPage
from conveyor.storage import jobs as job_rows
from conveyor.storage.logs import read_log

router = APIRouter(prefix="/api/v1", tags=["runs"])


@router.get("/runs")
async def list_runs(state: State, who: Caller, filters: Annotated[RunFilter, Query()]) -> RunPage:
    """Runs of every team the token can see, newest first."""
    return await state.runs.page(who, filters)


@router.get("/runs/{run_id}")
async def get_run(run_id: uuid.UUID, state: State, who: Caller) -> RunOut:
    return await state.runs.run(who, run_id)


@router.post("/runs/{run_id}/cancel")
async def cancel_run(run_id: uuid.UUID, state: State, who: Caller) -> RunOut:
    return await state.runs.cancel(who, run_id)


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
    return await state.runs.play(who, job_id)


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
