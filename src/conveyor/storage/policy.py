"""Deployment policy's rows: environments' protection rules, approvals, freeze windows and
the company's switches (docs/policy.md)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.deploy import Phase
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import (
    ApprovalRecord,
    DeploymentRecord,
    EnvironmentRecord,
    approval_record,
    deployment_record,
)
from conveyor.storage.projects import ProjectRecord
from conveyor.storage.tables import (
    Approval,
    Deployment,
    Environment,
    FreezeWindow,
    Project,
    Protection,
    Switch,
    Team,
)
from conveyor.storage.values import record_of

STOP_THE_LINE = "stop-the-line"
WAITING_PHASES = (Phase.PENDING.value, Phase.PAUSED.value, Phase.PROGRESSING.value)


# -- protection rules --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProtectionRecord:
    """The server's protection rules for one environment of a project."""

    environment: str
    rules: dict[str, Any]
    updated_by: str
    updated_at: datetime


async def _protection_row(
    session: Session, project_id: uuid.UUID, environment: str
) -> Protection | None:
    found: Protection | None = await session.scalar(
        select(Protection).where(
            Protection.project_id == project_id, Protection.environment == environment
        )
    )
    return found


async def protection(
    session: Session, project_id: uuid.UUID, environment: str
) -> ProtectionRecord | None:
    found = await _protection_row(session, project_id, environment)
    return record_of(ProtectionRecord, found) if found is not None else None


async def set_protection(
    session: Session,
    project: ProjectRecord,
    environment: str,
    rules: dict[str, Any],
    who: str,
) -> ProtectionRecord:
    """Replace the server's rules for the environment (an empty dict clears them)."""
    row = await _protection_row(session, project.id, environment)
    if row is None:
        row = Protection(team_id=project.team_id, project_id=project.id, environment=environment)
        session.add(row)
    row.rules = rules
    row.updated_by = who
    row.updated_at = utcnow()
    await session.flush()
    return record_of(ProtectionRecord, row)


# -- approvals ---------------------------------------------------------------------------


async def approvals(session: Session, deployment_ids: Sequence[uuid.UUID]) -> list[ApprovalRecord]:
    if not deployment_ids:
        return []
    rows = await session.scalars(
        select(Approval)
        .where(Approval.deployment_id.in_(deployment_ids))
        .order_by(Approval.created_at, Approval.id)
    )
    return [approval_record(row) for row in rows]


def add_approval(
    session: Session,
    deployment: DeploymentRecord,
    decision: str,
    subject: str,
    approver: str,
    comment: str,
) -> None:
    row = Approval(
        team_id=deployment.team_id,
        deployment_id=deployment.id,
        decision=decision,
        subject=subject,
        approver=approver,
        comment=comment,
    )
    session.add(row)


@dataclass(frozen=True)
class Waiting:
    """A deployment that waits for approvals, with where it is."""

    deployment: DeploymentRecord
    team: str
    project: str
    environment: str


async def waiting(session: Session, team_ids: Sequence[uuid.UUID] | None) -> list[Waiting]:
    """Deployments not yet approved whose rules require approvals (of the given teams;
    None: every team), oldest first."""
    query = (
        select(Deployment, Team.name, Project.name, Environment.name)
        .join(Environment, Environment.id == Deployment.environment_id)
        .join(Project, Project.id == Deployment.project_id)
        .join(Team, Team.id == Deployment.team_id)
        .where(
            Deployment.phase.in_(
                [Phase.PENDING.value, Phase.PAUSED.value, Phase.PROGRESSING.value]
            ),
            Deployment.approved_at.is_(None),
            Deployment.released_at.is_(None),
            Deployment.policy.is_not(None),
            Deployment.request.is_(None),
        )
        .order_by(Deployment.created_at)
    )
    if team_ids is not None:
        query = query.where(Deployment.team_id.in_(team_ids))
    rows = (await session.execute(query)).all()
    return [
        Waiting(deployment_record(row), team, project, env)
        for row, team, project, env in rows
        if int((row.policy or {}).get("required", 0)) > 0
    ]


# -- freeze windows ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FreezeRecord:
    """A freeze window: the company's (no team), a team's (no project), or one over an
    environment of a project."""

    id: uuid.UUID
    team_id: uuid.UUID | None
    project_id: uuid.UUID | None
    environment: str | None
    cron: str
    duration_s: int
    timezone: str
    action: str
    reason: str
    created_by: str
    created_at: datetime


def _freeze(row: FreezeWindow) -> FreezeRecord:
    return FreezeRecord(
        id=row.id,
        team_id=row.team_id,
        project_id=row.project_id,
        environment=row.environment,
        cron=row.cron,
        duration_s=row.duration_s,
        timezone=row.timezone,
        action=row.action,
        reason=row.reason,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
    )


async def add_window(
    session: Session,
    *,
    team_id: uuid.UUID | None,
    project_id: uuid.UUID | None,
    environment: str | None,
    cron: str,
    duration_s: int,
    timezone: str,
    action: str,
    reason: str,
    created_by: str,
) -> FreezeRecord:
    row = FreezeWindow(
        team_id=team_id,
        project_id=project_id,
        environment=environment,
        cron=cron,
        duration_s=duration_s,
        timezone=timezone,
        action=action,
        reason=reason,
        created_by=created_by,
    )
    session.add(row)
    await session.flush()
    return _freeze(row)


async def windows(
    session: Session,
    *,
    team_id: uuid.UUID | None = None,
    project_id: uuid.UUID | None = None,
    company: bool = False,
) -> list[FreezeRecord]:
    """The windows set at one level: the company's, a team's, or a project's
    environments'."""
    query = select(FreezeWindow).order_by(FreezeWindow.created_at, FreezeWindow.id)
    if company:
        query = query.where(FreezeWindow.team_id.is_(None))
    elif project_id is not None:
        query = query.where(FreezeWindow.project_id == project_id)
    else:
        query = query.where(FreezeWindow.team_id == team_id, FreezeWindow.project_id.is_(None))
    return [_freeze(row) for row in await session.scalars(query)]


async def window(session: Session, window_id: uuid.UUID) -> FreezeRecord | None:
    found = await session.get(FreezeWindow, window_id)
    return _freeze(found) if found is not None else None


async def remove_window(session: Session, window_id: uuid.UUID) -> None:
    await session.execute(delete(FreezeWindow).where(FreezeWindow.id == window_id))


async def windows_over(session: Session, env: EnvironmentRecord) -> list[FreezeRecord]:
    """Every window that covers the environment: the company's, its team's, and its own."""
    found = await session.scalars(
        select(FreezeWindow)
        .where(
            or_(
                FreezeWindow.team_id.is_(None),
                and_(FreezeWindow.team_id == env.team_id, FreezeWindow.project_id.is_(None)),
                and_(
                    FreezeWindow.project_id == env.project_id,
                    FreezeWindow.environment == env.name,
                ),
            )
        )
        .order_by(FreezeWindow.created_at, FreezeWindow.id)
    )
    return [_freeze(row) for row in found]


# -- switches ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SwitchRecord:
    """A company-wide switch (stop-the-line): whether it is on, why, by whom, since when."""

    on: bool
    reason: str
    changed_by: str
    changed_at: datetime


async def switch(session: Session, name: str = STOP_THE_LINE) -> SwitchRecord | None:
    found = await session.get(Switch, name, populate_existing=True)
    return record_of(SwitchRecord, found) if found is not None else None


async def is_on(session: Session, name: str = STOP_THE_LINE) -> bool:
    return bool(await session.scalar(select(Switch.on).where(Switch.name == name)))


async def set_switch(session: Session, on: bool, reason: str, who: str) -> SwitchRecord:
    row = await session.get(Switch, STOP_THE_LINE, populate_existing=True)
    if row is None:
        row = Switch(name=STOP_THE_LINE)
        session.add(row)
    row.on, row.reason, row.changed_by, row.changed_at = on, reason, who, utcnow()
    await session.flush()
    return record_of(SwitchRecord, row)


async def mark_approved(session: Session, deployment: DeploymentRecord, at: datetime) -> bool:
    """Record that the deployment has every approval it needs: once (a guarded UPDATE,
    so two approvals racing for the last one count once)."""
    result = await session.execute(
        update(Deployment)
        .where(Deployment.id == deployment.id, Deployment.approved_at.is_(None))
        .values(approved_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
