"""Deployment policy (docs/policy.md): environments' protection rules, the approvals
inbox and decisions, freeze windows (company, team, environment) and the company's
stop-the-line switch. Every change is audited."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from conveyor.api.errors import ApiError
from conveyor.api.state import Caller, Coordinator, State
from conveyor.deploy import approvals
from conveyor.domain import freeze, policy
from conveyor.domain.audit import Action
from conveyor.domain.clock import as_utc, iso, utcnow
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.pipeline.durations import parse_duration
from conveyor.policy.access import project_named, team_named
from conveyor.policy.gates import window_of
from conveyor.protocol.api import (
    ApprovalItemOut,
    DecideIn,
    DeploymentOut,
    FreezeIn,
    FreezeOut,
    ProjectFreezeIn,
    ProtectionOut,
    RulesIn,
    StopIn,
    StopOut,
)
from conveyor.storage import audit, deployments, names
from conveyor.storage import policy as rows
from conveyor.storage.database import Session
from conveyor.storage.policy import FreezeRecord
from conveyor.storage.projects import ProjectRecord

router = APIRouter(prefix="/api/v1", tags=["policy"])


# -- protection rules --------------------------------------------------------------------


@router.get("/projects/{team}/{project}/environments/{environment}/protection")
async def show_protection(
    team: str, project: str, environment: str, state: State, who: Caller
) -> ProtectionOut:
    """The environment's rules: those set on the server, and those in force."""
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.VIEWER)
    return await _protection(state, row, environment)


@router.put("/projects/{team}/{project}/environments/{environment}/protection")
async def set_protection(
    team: str, project: str, environment: str, body: RulesIn, state: State, who: Caller
) -> ProtectionOut:
    """Set the server's rules for the environment (maintainer): the fields given replace
    what the server had; they win over the artifact's conveyor.yml field by field. An
    empty body clears the server's rules."""
    given = body.model_dump(exclude_none=True)
    try:
        policy.parse(given, "rules")
    except policy.RuleError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.MAINTAINER)
        await rows.set_protection(session, row, environment, given, who.display)
        target = f"{team}/{project}/{environment}"
        await audit.record(session, row.team_id, who.display, Action.PROTECTION_SET, target, given)
    return await _protection(state, row, environment)


async def _protection(
    state: Coordinator, project: ProjectRecord, environment: str
) -> ProtectionOut:
    async with state.db.transaction() as session:
        stored = await rows.protection(session, project.id, environment)
        env = await deployments.environment(session, project.id, environment)
    server = stored.rules if stored is not None else {}
    if env is not None:
        effective = await state.deploys.rules_now(project, env)
    else:
        effective = policy.merged({}, server)
    return ProtectionOut(
        environment=environment,
        server=server,
        effective=effective.stored(),
        updated_by=stored.updated_by if stored is not None else "",
        updated_at=as_utc(stored.updated_at).isoformat() if stored is not None else "",
    )


# -- approvals ---------------------------------------------------------------------------


@router.get("/approvals")
async def inbox(
    state: State,
    who: Caller,
    all_: Annotated[bool, Query(alias="all")] = False,
) -> list[ApprovalItemOut]:
    """Deployments that wait for approvals: those the caller may decide (with `all`,
    every one it can see, with why it may not decide the others)."""
    return await state.deploys.inbox(who, all_)


@router.get("/deployments/{deployment_id}")
async def show_deployment(deployment_id: uuid.UUID, state: State, who: Caller) -> DeploymentOut:
    """One deployment by its id, with its approvals."""
    return await state.deploys.deployment_by_id(who, deployment_id)


@router.post("/deployments/{deployment_id}/approve")
async def approve(
    deployment_id: uuid.UUID, body: DecideIn, state: State, who: Caller
) -> DeploymentOut:
    """Approve a deployment that waits (the environment's `approver_role`; not the
    person who asked for it). The last approval needed lets it start."""
    return await state.deploys.decide(who, deployment_id, approvals.APPROVE, body.comment)


@router.post("/deployments/{deployment_id}/reject")
async def reject(
    deployment_id: uuid.UUID, body: DecideIn, state: State, who: Caller
) -> DeploymentOut:
    """Reject a deployment that waits: it ends aborted, with the comment as its reason."""
    return await state.deploys.decide(who, deployment_id, approvals.REJECT, body.comment)


# -- freeze windows ----------------------------------------------------------------------


def _window(body: FreezeIn) -> tuple[freeze.Window, int]:
    try:
        seconds = parse_duration(body.duration)
        window = freeze.Window(body.cron, timedelta(seconds=seconds), body.timezone)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    return window, int(seconds)


def freeze_out(row: FreezeRecord, scope: str) -> FreezeOut:
    window = window_of(row)
    now = utcnow()
    held = window.containing(now)
    return FreezeOut(
        id=str(row.id),
        scope=scope,
        cron=row.cron,
        duration_s=row.duration_s,
        timezone=row.timezone,
        action=row.action,
        reason=row.reason,
        created_by=row.created_by,
        created_at=as_utc(row.created_at).isoformat(),
        active_until=iso(held[1]) if held is not None else None,
        next_start=window.next_start(now).isoformat(),
    )


async def _add_window(
    session: Session,
    body: FreezeIn,
    who: Principal,
    *,
    team_id: uuid.UUID | None,
    project: ProjectRecord | None,
    scope: str,
) -> FreezeOut:
    _, seconds = _window(body)
    row = await rows.add_window(
        session,
        team_id=team_id,
        project_id=project.id if project is not None else None,
        environment=body.environment if isinstance(body, ProjectFreezeIn) else None,
        cron=body.cron,
        duration_s=seconds,
        timezone=body.timezone,
        action=body.action,
        reason=body.reason,
        created_by=who.display,
    )
    detail = {
        "id": str(row.id),
        "cron": body.cron,
        "duration_s": seconds,
        "timezone": body.timezone,
        "action": body.action,
        "reason": body.reason,
    }
    await audit.record(session, team_id, who.display, Action.FREEZE_CREATE, scope, detail)
    return freeze_out(row, scope)


@router.get("/freezes")
async def company_freezes(state: State, who: Caller) -> list[FreezeOut]:
    """The company-wide freeze windows (every token may read them)."""
    async with state.db.transaction() as session:
        found = await rows.windows(session, company=True)
    return [freeze_out(w, "company") for w in found]


@router.post("/freezes", status_code=201)
async def add_company_freeze(body: FreezeIn, state: State, who: Caller) -> FreezeOut:
    """A company-wide freeze window (admin)."""
    if not who.is_admin:
        raise ApiError(403, "forbidden", "only the admin sets company-wide freezes")
    async with state.db.transaction() as session:
        return await _add_window(session, body, who, team_id=None, project=None, scope="company")


@router.get("/teams/{team}/freezes")
async def team_freezes(team: str, state: State, who: Caller) -> list[FreezeOut]:
    async with state.db.transaction() as session:
        row = await team_named(session, who, team, Role.VIEWER)
        found = await rows.windows(session, team_id=row.id)
    return [freeze_out(w, f"team {team}") for w in found]


@router.post("/teams/{team}/freezes", status_code=201)
async def add_team_freeze(team: str, body: FreezeIn, state: State, who: Caller) -> FreezeOut:
    """A freeze window over every environment of the team's projects (maintainer)."""
    async with state.db.transaction() as session:
        row = await team_named(session, who, team, Role.MAINTAINER)
        return await _add_window(
            session, body, who, team_id=row.id, project=None, scope=f"team {team}"
        )


@router.get("/projects/{team}/{project}/freezes")
async def project_freezes(team: str, project: str, state: State, who: Caller) -> list[FreezeOut]:
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.VIEWER)
        found = await rows.windows(session, project_id=row.id)
    return [freeze_out(w, f"{team}/{project}/{w.environment}") for w in found]


@router.post("/projects/{team}/{project}/freezes", status_code=201)
async def add_project_freeze(
    team: str, project: str, body: ProjectFreezeIn, state: State, who: Caller
) -> FreezeOut:
    """A freeze window over one environment of the project (maintainer)."""
    async with state.db.transaction() as session:
        row, _ = await project_named(session, who, team, project, Role.MAINTAINER)
        scope = f"{team}/{project}/{body.environment}"
        return await _add_window(session, body, who, team_id=row.team_id, project=row, scope=scope)


@router.delete("/freezes/{window_id}", status_code=204)
async def delete_freeze(window_id: uuid.UUID, state: State, who: Caller) -> Response:
    """Remove a freeze window (the admin for the company's; a maintainer of its team)."""
    async with state.db.transaction() as session:
        row = await rows.window(session, window_id)
        if row is None or (row.team_id is not None and not who.can_see(row.team_id)):
            raise ApiError(404, "not_found", f"no freeze window {window_id}")
        if row.team_id is None and not who.is_admin:
            raise ApiError(403, "forbidden", "only the admin removes company-wide freezes")
        if row.team_id is not None:
            who.require(row.team_id, Role.MAINTAINER, "freeze window")
        scope = "company"
        if row.project_id is not None:  # as its creation was audited: the environment
            project = await names.project(session, row.project_id)
            team = await names.team(session, row.team_id) if row.team_id is not None else ""
            scope = f"{team}/{project}/{row.environment}"
        elif row.team_id is not None:
            scope = f"team {await names.team(session, row.team_id)}"
        detail = {"id": str(row.id), "cron": row.cron, "duration_s": row.duration_s}
        await rows.remove_window(session, row.id)
        await audit.record(session, row.team_id, who.display, Action.FREEZE_DELETE, scope, detail)
    return Response(status_code=204)


# -- stop-the-line -----------------------------------------------------------------------


@router.get("/stop-the-line")
async def show_stop(state: State, who: Caller) -> StopOut:
    async with state.db.transaction() as session:
        row = await rows.switch(session)
    if row is None:
        return StopOut(on=False, reason="", changed_by="", changed_at=None)
    return StopOut(
        on=row.on, reason=row.reason, changed_by=row.changed_by, changed_at=iso(row.changed_at)
    )


@router.put("/stop-the-line")
async def set_stop(body: StopIn, state: State, who: Caller) -> StopOut:
    """Turn the company-wide stop-the-line switch on (every progressing rollout halts
    before its next step; new ones wait at their gate; rollbacks and emergencies go on)
    or off (admin)."""
    if not who.is_admin:
        raise ApiError(403, "forbidden", "only the admin stops the line")
    if body.on and not body.reason:
        raise ApiError(422, "invalid_request", "reason: say why the line stops")
    async with state.db.transaction() as session:
        row = await rows.set_switch(session, body.on, body.reason, who.display)
        detail = {"on": body.on, "reason": body.reason}
        await audit.record(session, None, who.display, Action.STOP_THE_LINE, "company", detail)
    return StopOut(
        on=row.on, reason=row.reason, changed_by=row.changed_by, changed_at=iso(row.changed_at)
    )
