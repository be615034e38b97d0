"""Projects, and starting runs of them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from conveyor.api.errors import ApiError
from conveyor.api.idempotency import once, parse_key
from conveyor.api.state import Caller, State
from conveyor.domain.audit import Action
from conveyor.domain.clock import utcnow
from conveyor.domain.roles import Role
from conveyor.ids import new_id
from conveyor.intake.inbox import new_hook_secret, seal_hook_secret
from conveyor.intake.runs import nonce
from conveyor.notify.statuses import STATUS_TOKEN
from conveyor.policy.access import project_named, team_named
from conveyor.protocol import patterns
from conveyor.protocol.api import (
    DeliveryOut,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    RotateIn,
    RotateOut,
    RunFilter,
    RunOut,
    RunPage,
    SecretIn,
    SecretNames,
    TriggerIn,
)
from conveyor.storage import audit, projects
from conveyor.storage.dora import production_names
from conveyor.storage.projects import AlreadyExists, ProjectRecord, TeamRecord

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])

retry_router = APIRouter(prefix="/api/v1", tags=["runs"])


def _out(project: ProjectRecord, team: TeamRecord, secret: str | None = None) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        team=team.name,
        name=project.name,
        repo_url=project.repo_url,
        config_path=project.config_path,
        provider=project.provider,
        hook_path=f"/hooks/{project.provider}/{team.name}/{project.name}",
        webhook_secret=secret,
        statuses_to=project.status_api,
        artifact_retention_days=project.artifact_retention_days,
        production=list(production_names(project)),
        required_teams=project.required_teams,
    )


@router.post("", status_code=201)
async def create_project(body: ProjectIn, state: State, who: Caller) -> ProjectOut:
    """Create a project. Its webhook secret is the one given, or a generated one that
    this answer shows once."""
    secret = body.webhook_secret or new_hook_secret()
    async with state.db.transaction() as session:
        team = await team_named(session, who, body.team, Role.MAINTAINER)
    project_id = new_id()
    status = body.status
    project = ProjectRecord(
        id=project_id,
        team_id=team.id,
        name=body.name,
        repo_url=body.repo_url,
        config_path=body.config_path,
        provider=body.provider,
        artifact_retention_days=body.artifact_retention_days,
        production=body.production,
        hook_secret=seal_hook_secret(state.secrets, project_id, secret),
        status_api=status.api_url if status else None,
        status_repo=status.repository if status else None,
        status_token=state.secrets.seal_blob(project_id, STATUS_TOKEN, status.token)
        if status
        else None,
    )
    try:
        await projects.create_project(state.db, project, body.team, who.display)
    except AlreadyExists as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
    return _out(project, team, secret if body.webhook_secret is None else None)


@router.patch("/{team}/{project}")
async def update_project(
    team: str, project: str, body: ProjectPatch, state: State, who: Caller
) -> ProjectOut:
    """Change the project's artifact retention (days), its production environments, or
    the teams whose required jobs a pull request needs."""
    given = body.model_dump(exclude_none=True)
    if not given:
        raise ApiError(422, "invalid_request", "nothing to change: give a field to change")
    async with state.db.transaction() as session:
        row, team_row = await project_named(session, who, team, project, Role.MAINTAINER)
        if "required_teams" in given:
            for name in given["required_teams"]:
                if await projects.team_named(session, name) is None:
                    raise ApiError(404, "not_found", f"required_teams: no team {name!r}")
            given["required_teams"] = given["required_teams"] or None
        row = await projects.change(session, row, **given)
        target = f"{team}/{project}"
        await audit.record(session, row.team_id, who.display, Action.PROJECT_CHANGE, target, given)
    return _out(row, team_row)


@router.post("/{team}/{project}/webhook-secret")
async def rotate_webhook_secret(
    team: str, project: str, body: RotateIn, state: State, who: Caller
) -> RotateOut:
    """Replace the webhook secret; the previous one keeps verifying for the grace period,
    so the provider's settings can be updated without losing deliveries."""
    secret = body.webhook_secret or new_hook_secret()
    until = utcnow() + timedelta(seconds=body.grace_seconds)
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.MAINTAINER)
        await projects.change(
            session,
            row,
            hook_secret_old=row.hook_secret,
            hook_secret_old_until=until,
            hook_secret=seal_hook_secret(state.secrets, row.id, secret),
        )
        detail = {"grace_seconds": body.grace_seconds}
        action = Action.WEBHOOK_SECRET_ROTATE
        await audit.record(session, row.team_id, who.display, action, f"{team}/{project}", detail)
    state.intake.forget(team, project)
    return RotateOut(webhook_secret=secret, previous_valid_until=until.isoformat())


@router.get("/{team}/{project}/deliveries")
async def list_deliveries(
    team: str,
    project: str,
    state: State,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    """The project's latest webhook deliveries, newest first, with what each started."""
    return await state.runs.deliveries(who, team, project, limit)


@router.get("")
async def list_projects(state: State, who: Caller) -> list[ProjectOut]:
    async with state.db.transaction() as session:
        rows = await projects.listing(session, only=who.team_id, every=who.is_admin)
    return [_out(p, t) for p, t in rows]


@router.get("/{team}/{project}")
async def get_project(team: str, project: str, state: State, who: Caller) -> ProjectOut:
    async with state.db.transaction() as session:
        return _out(*await project_named(session, who, team, project, Role.VIEWER))


@router.post("/{team}/{project}/runs", status_code=201, response_model=RunOut)
async def trigger_run(
    team: str,
    project: str,
    body: TriggerIn,
    state: State,
    who: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=300, json_schema_extra=patterns.documented(patterns.IDEMPOTENCY_KEY)),
    ] = None,
) -> RunOut | JSONResponse:
    """Start a run of `ref` (at `sha` if given). With an `Idempotency-Key`, a repeat
    returns the first answer (409 while it is in progress, 422 for a different body)."""
    key = None if idempotency_key is None else parse_key(idempotency_key)

    async def act() -> RunOut:
        made = nonce(who, key)
        return await state.runs.trigger(who, team, project, body.ref, body.sha, made)

    if idempotency_key is None:
        return await act()
    route = f"/api/v1/projects/{team}/{project}/runs"
    return await once(state, who, route, idempotency_key, body, 201, act)


@retry_router.post("/runs/{run_id}/retry", status_code=201, response_model=RunOut)
async def retry_run(
    run_id: uuid.UUID,
    state: State,
    who: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=300, json_schema_extra=patterns.documented(patterns.IDEMPOTENCY_KEY)),
    ] = None,
) -> RunOut | JSONResponse:
    """Run the same commit of the same ref again, as a new run."""
    run, _, _ = await state.runs.retryable(who, run_id)
    if idempotency_key is None:
        return await state.runs.retry(who, run_id)
    key = parse_key(idempotency_key)
    body = TriggerIn(ref=run.ref, sha=run.sha)
    route = f"/api/v1/runs/{run_id}/retry"
    return await once(
        state, who, route, idempotency_key, body, 201, lambda: state.runs.retry(who, run_id, key)
    )


@router.get("/{team}/{project}/runs")
async def list_project_runs(
    team: str, project: str, state: State, who: Caller, filters: Annotated[RunFilter, Query()]
) -> RunPage:
    """The project's runs, newest first."""
    return await state.runs.page(who, filters, (team, project))


@router.post("/{team}/{project}/secrets", status_code=201)
async def set_secret(
    team: str, project: str, body: SecretIn, state: State, who: Caller
) -> SecretNames:
    """Create or replace a secret; its value is never returned."""
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.MAINTAINER)
        await state.secrets.put(session, row.team_id, row.id, body.name, body.value)
        detail = {"name": body.name}  # never its value
        target = f"{team}/{project}"
        await audit.record(session, row.team_id, who.display, Action.SECRET_SET, target, detail)
        return SecretNames(names=await state.secrets.names(session, row.id))


@router.get("/{team}/{project}/secrets")
async def list_secrets(team: str, project: str, state: State, who: Caller) -> SecretNames:
    """The names of the project's secrets (never their values)."""
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.DEVELOPER)
        return SecretNames(names=await state.secrets.names(session, row.id))
