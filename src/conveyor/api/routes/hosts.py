"""The fleet: agents join and long-poll for their host's desired state
(`/api/v1/agent/...`, with a host token), and people list, drain and remove hosts and
manage host tokens and shared pools (deploy/fleet.py holds the use cases)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from conveyor.api.auth import HOST_PREFIX, bearer, new_token, token_hash
from conveyor.api.state import Caller, State
from conveyor.api.transfer import blob_response
from conveyor.protocol.agent import MAX_INT, Desired, Join, Joined, Report
from conveyor.protocol.api import NAME, HostOut, HostTokenIn, HostTokenOut

router = APIRouter(tags=["hosts"])
DIGEST = r"^sha256:[0-9a-f]{64}$"


def _host_token(request: Request) -> str:
    """The sha256 of the agent's host token (a dependency, so that a call without one
    gets 401 before its body is looked at)."""
    return token_hash(bearer(request))


HostToken = Annotated[str, Depends(_host_token)]
Fence = Annotated[int, Query(ge=1, le=MAX_INT)]
Pool = Annotated[str, Path(pattern=NAME, max_length=100)]


# -- agents ----------------------------------------------------------------------------


@router.post("/api/v1/agent/join", status_code=201)
async def join(body: Join, token: HostToken, state: State) -> Joined:
    """Register the host (again): the answer's fence goes with every later call."""
    return await state.fleet.join(token, body)


@router.get("/api/v1/agent/desired")
async def desired(
    token: HostToken,
    state: State,
    host: uuid.UUID,
    fence: Fence,
    generation: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    wait: Annotated[float, Query(ge=0, le=60)] = 5.0,
) -> Desired:
    """What the host should run: at once when its generation is not `generation`, else
    after at most `wait` seconds (the coordinator's poll time caps it). Renews the
    host's lease; 409 when the host registered again since (join again)."""
    return await state.fleet.desired(token, host, fence, generation, wait)


@router.post("/api/v1/agent/report", status_code=204)
async def report(body: Report, token: HostToken, state: State, host: uuid.UUID) -> Response:
    """What the agent sees of its host's instances (sent when something changed, and
    with its polls). Renews the host's lease; 409 when the host joined again since."""
    await state.fleet.report(token, host, body)
    return Response(status_code=204)


@router.get("/api/v1/agent/artifacts/{digest}", response_model=None)
async def agent_artifact(
    digest: Annotated[str, Path(pattern=DIGEST)],
    token: HostToken,
    state: State,
    host: uuid.UUID,
    fence: Fence,
) -> FileResponse | StreamingResponse | RedirectResponse:
    """An artifact's bytes by digest, for an agent whose host serves the artifact's team.
    Answers `Range` requests, so that an interrupted download resumes."""
    found, team = await state.fleet.artifact(token, host, fence, digest)
    return blob_response(state, found, team)


# -- people ----------------------------------------------------------------------------


@router.get("/api/v1/hosts")
async def list_hosts(state: State, who: Caller) -> list[HostOut]:
    """The hosts the caller's team runs on: its own and those of the pools shared with
    it (the admin: every host)."""
    return await state.fleet.hosts_out(who)


@router.get("/api/v1/hosts/{name}")
async def show_host(name: str, state: State, who: Caller) -> HostOut:
    return await state.fleet.host_out(await state.fleet.host(who, name))


@router.post("/api/v1/hosts/{name}/drain")
async def drain_host(name: str, state: State, who: Caller) -> HostOut:
    """Nothing new is placed on the host; its instances move to other hosts."""
    return await state.fleet.host_out(await state.fleet.drain(who, name, on=True))


@router.post("/api/v1/hosts/{name}/undrain")
async def undrain_host(name: str, state: State, who: Caller) -> HostOut:
    return await state.fleet.host_out(await state.fleet.drain(who, name, on=False))


@router.delete("/api/v1/hosts/{name}", status_code=204)
async def remove_host(name: str, state: State, who: Caller) -> Response:
    """Forget a host that is lost or draining."""
    await state.fleet.remove(who, name)
    return Response(status_code=204)


@router.post("/api/v1/teams/{team}/host-tokens", status_code=201)
async def create_host_token(
    team: str, body: HostTokenIn, state: State, who: Caller
) -> HostTokenOut:
    """A token agents register the team's hosts with (maintainer). Shown once."""
    token = new_token(HOST_PREFIX)
    made = await state.fleet.create_token(who, team, None, body.name, token_hash(token))
    return (await state.fleet.token_out(made)).model_copy(update={"token": token})


@router.post("/api/v1/pools/{pool}/host-tokens", status_code=201)
async def create_pool_token(
    pool: Pool,
    body: HostTokenIn,
    state: State,
    who: Caller,
) -> HostTokenOut:
    """A token agents register a shared pool's hosts with (admin). Shown once."""
    token = new_token(HOST_PREFIX)
    made = await state.fleet.create_token(who, None, pool, body.name, token_hash(token))
    return (await state.fleet.token_out(made)).model_copy(update={"token": token})


@router.get("/api/v1/host-tokens")
async def list_host_tokens(state: State, who: Caller) -> list[HostTokenOut]:
    return [await state.fleet.token_out(made) for made in await state.fleet.tokens(who)]


@router.delete("/api/v1/host-tokens/{token_id}")
async def revoke_host_token(token_id: uuid.UUID, state: State, who: Caller) -> HostTokenOut:
    """Revoke it: the hosts that joined with it are refused at their agents' next call."""
    return await state.fleet.token_out(await state.fleet.revoke_token(who, token_id))


@router.put("/api/v1/pools/{pool}/teams/{team}", status_code=204)
async def share_pool(pool: Pool, team: str, state: State, who: Caller) -> Response:
    """Open a shared pool's hosts to a team (admin)."""
    await state.fleet.share_pool(who, pool, team, on=True)
    return Response(status_code=204)


@router.delete("/api/v1/pools/{pool}/teams/{team}", status_code=204)
async def unshare_pool(pool: Pool, team: str, state: State, who: Caller) -> Response:
    await state.fleet.share_pool(who, pool, team, on=False)
    return Response(status_code=204)
