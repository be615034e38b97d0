"""The runner protocol: register, request a job (long poll), heartbeat, log, finish.

Runners dial out, so they need no inbound port. Every write carries the fencing token of
the lease it was given; a write with a stale token gets 409 and changes nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from conveyor.api.auth import RUNNER_PREFIX, new_token, token_hash
from conveyor.api.errors import ApiError
from conveyor.api.state import Caller, State
from conveyor.api.transfer import blob_response, store
from conveyor.deploy.artifacts import artifact_out
from conveyor.deploy.views import deployment_out
from conveyor.domain.principal import Principal, RunnerIdentity
from conveyor.domain.status import JobStatus
from conveyor.observability import metrics
from conveyor.pipeline.plan import job_from_json
from conveyor.protocol.api import ArtifactOut, DeploymentOut
from conveyor.protocol.errors import StaleLease
from conveyor.protocol.runner import (
    MAX_LOG_CHUNK,
    Assignment,
    FinishReply,
    FinishRequest,
    Heartbeat,
    HeartbeatReply,
    RegisterReply,
    RegisterRequest,
)
from conveyor.storage import artifacts, caches, deployments, jobs, names, tokens
from conveyor.storage.artifacts import Provenance
from conveyor.storage.jobs import JobBrief

router = APIRouter(prefix="/api/v1/runners", tags=["runners"])
SAFETY_LOOK_S = 5.0
"""How often a waiting request claims even though no job was announced."""
CACHE_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


def _runner(who: Principal) -> RunnerIdentity:
    if who.runner is None:
        raise ApiError(403, "forbidden", "this endpoint is for runners")
    return who.runner


@router.post("/register", status_code=201)
async def register(body: RegisterRequest, state: State) -> RegisterReply:
    async with state.db.transaction() as session:
        grant = await tokens.registration(session, token_hash(body.token))
        if grant is None:
            raise ApiError(401, "unauthorized", "unknown registration token")
        token = new_token(RUNNER_PREFIX)
        runner = await tokens.add_runner(session, grant, body.name, body.labels, token_hash(token))
    return RegisterReply(id=runner.id, token=token)


@router.post("/jobs/request", response_model=None)
async def request_job(
    request: Request,
    state: State,
    who: Caller,
    wait: Annotated[float, Query(ge=0, le=60)] = 30.0,
) -> Assignment | Response:
    """A job for this runner, answered at once when one is ready, else held up to `wait`
    seconds (204 when nothing came)."""
    _runner(who)
    assert who.runner is not None
    deadline = time.monotonic() + min(wait, state.long_poll_s)
    looked = -SAFETY_LOOK_S if wait == 0 else time.monotonic()
    while True:
        # A look is skipped when nothing was announced since the last empty claim for
        # this kind of runner, except every SAFETY_LOOK_S (a job no one announced).
        now = time.monotonic()
        if state.scheduler.may_have_work(who.runner) or now - looked >= SAFETY_LOOK_S:
            looked = now
            assignment = await state.scheduler.claim(who.runner)
            if assignment is not None:
                return assignment
        left = deadline - time.monotonic()
        if left <= 0 or await request.is_disconnected():
            return Response(status_code=204)
        await state.scheduler.wait(who.runner, min(left, state.recheck_s))


async def _own_job(state: State, who: Principal, job_id: uuid.UUID) -> JobBrief:
    """The job, if it was leased to this runner (404 otherwise)."""
    runner = _runner(who)
    async with state.db.transaction() as session:
        found = await jobs.brief(session, job_id)
    if found is None or found.runner_id != runner.id:
        raise ApiError(404, "not_found", "no such job for this runner")
    return found


@router.post("/jobs/{job_id}/heartbeat")
async def heartbeat(
    job_id: uuid.UUID, body: Heartbeat, state: State, who: Caller
) -> HeartbeatReply:
    runner = _runner(who)
    return HeartbeatReply(canceled=await state.scheduler.heartbeat(job_id, body.fence, runner.id))


@router.put("/jobs/{job_id}/log", status_code=204)
async def append_log(
    job_id: uuid.UUID,
    request: Request,
    state: State,
    who: Caller,
    fence: Annotated[int, Query()],
    offset: Annotated[int, Query(ge=0)],
) -> Response:
    runner = _runner(who)
    data = await request.body()
    if len(data) > MAX_LOG_CHUNK:
        raise ApiError(413, "too_large", f"a log chunk is at most {MAX_LOG_CHUNK} bytes")
    await state.scheduler.append_log(job_id, fence, offset, data, runner.id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/finish")
async def finish(job_id: uuid.UUID, body: FinishRequest, state: State, who: Caller) -> FinishReply:
    runner = _runner(who)
    tail = (body.log.offset, body.log.text.encode()) if body.log and body.log.text else None
    if tail and len(tail[1]) > MAX_LOG_CHUNK:
        raise ApiError(413, "too_large", f"a log chunk is at most {MAX_LOG_CHUNK} bytes")
    status = await state.scheduler.finish(job_id, body.fence, body, runner.id, log=tail)
    return FinishReply(status=status)


async def _live_job(state: State, who: Principal, job_id: uuid.UUID, fence: int) -> JobBrief:
    """A job this runner holds at `fence` (404 when it is not the runner's, 409 for a
    stale fence), in one query."""
    found = await _own_job(state, who, job_id)
    if found.fence != fence or found.status is not JobStatus.RUNNING:
        raise StaleLease(f"job {job_id}: fencing token {fence} is stale")
    return found


@router.get("/jobs/{job_id}/cache/{key}")
async def get_cache(
    job_id: uuid.UUID,
    key: Annotated[str, Path(pattern=CACHE_KEY, max_length=200)],
    state: State,
    who: Caller,
    fence: Annotated[int, Query()],
) -> Response:
    """The job team's cache archive for `key` (404 on a miss); hits and misses count."""
    team_id = (await _live_job(state, who, job_id, fence)).team_id
    async with state.db.transaction() as session:
        data = await caches.fetch(session, team_id, key)
        team = await names.team(session, team_id)
    metrics.cache_requests.labels(team, "miss" if data is None else "hit").inc()
    if data is None:
        raise ApiError(404, "not_found", f"no cache for key {key}")
    return Response(content=data, media_type="application/x-tar")


@router.put("/jobs/{job_id}/cache/{key}", status_code=204)
async def put_cache(
    job_id: uuid.UUID,
    key: Annotated[str, Path(pattern=CACHE_KEY, max_length=200)],
    request: Request,
    state: State,
    who: Caller,
    fence: Annotated[int, Query()],
) -> Response:
    """Keep a cache archive for the job's team; the team's oldest archives are evicted
    past its quota."""
    team_id = (await _live_job(state, who, job_id, fence)).team_id
    data = await request.body()
    if len(data) > state.cache_quota:
        raise ApiError(413, "too_large", f"a cache is at most {state.cache_quota} bytes")
    async with state.db.transaction() as session:
        await caches.store(session, team_id, key, data, state.cache_quota)
    return Response(status_code=204)


@router.put("/jobs/{job_id}/artifacts", status_code=201)
async def publish_artifacts(
    job_id: uuid.UUID,
    request: Request,
    state: State,
    who: Caller,
    fence: Annotated[int, Query()],
) -> ArtifactOut:
    """A job's `artifacts: paths` as one tarball, named after the job, with the run, job,
    commit and runner as its provenance."""
    await _live_job(state, who, job_id, fence)
    runner = _runner(who)
    async with state.db.transaction() as session:
        job, run, project, team = await jobs.with_run(session, job_id)
    provenance = Provenance(
        sha=run.sha,
        run_id=run.id,
        job_id=job.id,
        job_name=job.name,
        runner=runner.name,
        uploaded_by=f"runner {runner.name}",
    )
    planned = job_from_json(job.spec)
    name = planned.artifacts.name if planned.artifacts and planned.artifacts.name else job.name
    row, _ = await store(state, request, project, name, provenance)
    return artifact_out(row, team.name, project.name)


@router.get("/jobs/{job_id}/artifacts", response_model=None)
async def fetch_artifacts(
    job_id: uuid.UUID,
    state: State,
    who: Caller,
    fence: Annotated[int, Query()],
    job: Annotated[str, Query(min_length=1, max_length=300)],
) -> FileResponse | StreamingResponse | RedirectResponse:
    """The tarball that job `job` of the same run published (404 when it published none)."""
    live = await _live_job(state, who, job_id, fence)
    async with state.db.transaction() as session:
        row = await artifacts.of_run(session, live.run_id, job)
        team = await names.team(session, live.team_id)
    if row is None:
        raise ApiError(404, "not_found", f"job {job!r} of this run published no artifacts")
    return blob_response(state, row, team)


@router.post("/jobs/{job_id}/deploy", status_code=201)
async def start_deploy(
    job_id: uuid.UUID, state: State, who: Caller, fence: Annotated[int, Query()]
) -> DeploymentOut:
    """A `deploy:` job's deployment: the artifact a job it needs published in this run,
    to the job's environment with its strategy. Asked again, it answers the same one."""
    await _live_job(state, who, job_id, fence)
    return (await state.deploys.deploy_for_job(who, job_id, fence)).out()


@router.get("/jobs/{job_id}/deploy/{environment}/{number}")
async def follow_deploy(
    job_id: uuid.UUID,
    environment: str,
    number: int,
    state: State,
    who: Caller,
    fence: Annotated[int, Query()],
) -> DeploymentOut:
    """The deployment a `deploy:` job started, for the runner to follow."""
    await _live_job(state, who, job_id, fence)
    async with state.db.transaction() as session:
        row = await deployments.of_job_project(session, job_id, environment, number)
    if row is None:
        raise ApiError(404, "not_found", f"no revision {number} in {environment}")
    return deployment_out(row, environment)
