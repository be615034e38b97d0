"""Deployments and environments: deploy an artifact, follow it, promote, pause, resume,
abort, roll back, and clear a pin. The use cases are deploy.service's; each
environment's driver in the deployment manager carries the requests out
(deploy/manager.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from conveyor.api.errors import ApiError
from conveyor.api.idempotency import once, parse_key
from conveyor.api.state import Caller, State
from conveyor.domain.deploy import Control
from conveyor.hosting.haproxy import find_haproxy
from conveyor.hosting.routing import RouterError
from conveyor.protocol import patterns
from conveyor.protocol.api import (
    DIGEST,
    DeployIn,
    DeploymentOut,
    EnvironmentOut,
    PromoteIn,
    RiskOut,
    RollbackIn,
)

router = APIRouter(prefix="/api/v1/projects/{team}/{project}", tags=["deployments"])


@router.post("/deployments", status_code=201, response_model=DeploymentOut)
async def create_deployment(
    team: str,
    project: str,
    body: DeployIn,
    state: State,
    who: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=300, json_schema_extra=patterns.documented(patterns.IDEMPOTENCY_KEY)),
    ] = None,
) -> DeploymentOut | JSONResponse:
    """Deploy an artifact of this project to an environment (created at its first deploy,
    with the local target). 409 for a pinned revision or one older than what is
    deployed or queued; 422 when the artifact has no valid conveyor.yml `runtime`."""

    async def act() -> DeploymentOut:
        try:
            find_haproxy()
        except RouterError as exc:
            raise ApiError(503, "router_missing", str(exc)) from exc
        return (await state.deploys.deploy(who, team, project, body)).out()

    if idempotency_key is None:
        return await act()
    parse_key(idempotency_key)
    route = f"/api/v1/projects/{team}/{project}/deployments"
    return await once(state, who, route, idempotency_key, body, 201, act)


@router.get("/environments")
async def list_environments(
    team: str, project: str, state: State, who: Caller
) -> list[EnvironmentOut]:
    return await state.deploys.environments(who, team, project)


@router.get("/environments/{environment}")
async def show_environment(
    team: str, project: str, environment: str, state: State, who: Caller
) -> EnvironmentOut:
    """Revision, URL, phase, step, traffic split, instances with health, and history."""
    return await state.deploys.environment(who, team, project, environment)


@router.get("/environments/{environment}/risk")
async def show_risk(
    team: str,
    project: str,
    environment: str,
    state: State,
    who: Caller,
    artifact: Annotated[str, Query(pattern=DIGEST, description="sha256:…")],
) -> RiskOut:
    """The risk score of deploying `artifact` to the environment now, factor by factor
    (an environment not deployed to yet has no diff and no history to weigh), timed on
    the environment's clock (its rules' `timezone`) and its freeze windows."""
    return await state.deploys.risk(who, team, project, environment, artifact)


@router.get("/environments/{environment}/deployments/{number}")
async def show_deployment(
    team: str, project: str, environment: str, number: int, state: State, who: Caller
) -> DeploymentOut:
    return await state.deploys.deployment(who, team, project, environment, number)


@router.post("/environments/{environment}/promote")
async def promote(
    team: str, project: str, environment: str, body: PromoteIn, state: State, who: Caller
) -> DeploymentOut:
    """Skip the current pause (or, with `full`, every remaining step)."""
    what = Control.PROMOTE_FULL if body.full else Control.PROMOTE
    return (await state.deploys.control(who, team, project, environment, what)).out()


@router.post("/environments/{environment}/rollback", status_code=201, response_model=DeploymentOut)
async def rollback(
    team: str,
    project: str,
    environment: str,
    body: RollbackIn,
    state: State,
    who: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=300, json_schema_extra=patterns.documented(patterns.IDEMPOTENCY_KEY)),
    ] = None,
) -> DeploymentOut | JSONResponse:
    """Back to revision `to` (default: the previous one), pinning the current one as bad:
    a traffic switch when that revision is still warm, else a rolling redeploy of its
    stored artifact."""

    async def act() -> DeploymentOut:
        made = await state.deploys.rollback(
            who, team, project, environment, body.to, emergency=body.emergency
        )
        return made.out()

    if idempotency_key is None:
        return await act()
    parse_key(idempotency_key)
    route = f"/api/v1/projects/{team}/{project}/environments/{environment}/rollback"
    return await once(state, who, route, idempotency_key, body, 201, act)


@router.post("/environments/{environment}/pause")
async def pause(
    team: str, project: str, environment: str, state: State, who: Caller
) -> DeploymentOut:
    """Hold the deployment at its current step."""
    return (await state.deploys.control(who, team, project, environment, Control.PAUSE)).out()


@router.post("/environments/{environment}/resume")
async def resume(
    team: str, project: str, environment: str, state: State, who: Caller
) -> DeploymentOut:
    """Carry on after `pause`."""
    return (await state.deploys.control(who, team, project, environment, Control.RESUME)).out()


@router.post("/environments/{environment}/abort")
async def abort(
    team: str, project: str, environment: str, state: State, who: Caller
) -> DeploymentOut:
    """Send the canary's traffic back to stable at once, then remove it."""
    return (await state.deploys.control(who, team, project, environment, Control.ABORT)).out()


@router.delete("/environments/{environment}/pins/{digest}")
async def unpin(
    team: str, project: str, environment: str, digest: str, state: State, who: Caller
) -> dict[str, int]:
    """Clear the pin on a revision (who and when are kept)."""
    return {"cleared": await state.deploys.unpin(who, team, project, environment, digest)}
