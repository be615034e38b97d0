"""The production deployments of a team's projects in a window, as DORA's `Change`s
(domain.dora): which environments count as production (a project's `production`, else
`production` and `prod`), which deploys failed (aborted by a rule while they took
traffic; rolled back; fixed by a later deploy marked `fix`) and when each failure was
recovered."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from sqlalchemy import select

from conveyor.domain.clock import as_utc
from conveyor.domain.deploy import Phase
from conveyor.domain.dora import Change
from conveyor.storage.database import Session
from conveyor.storage.projects import ProjectRecord
from conveyor.storage.tables import Deployment, Environment, Project, Team

PRODUCTION = ("production", "prod")
RULES = ("analysis ", "bake analysis ", "instance ")
"""How the messages of the aborts that rules made begin (deploy.planner)."""
ROLLBACK = "rollback"


def production_names(project: Project | ProjectRecord) -> tuple[str, ...]:
    return tuple(project.production) if project.production else PRODUCTION


async def changes(
    session: Session, team_id: uuid.UUID | None, start: datetime, end: datetime
) -> list[Change]:
    """The production deployments of the team (None: of every team) that ended in
    [start, end)."""
    query = (
        select(Environment, Project, Team.name)
        .join(Project, Project.id == Environment.project_id)
        .join(Team, Team.id == Project.team_id)
    )
    if team_id is not None:
        query = query.where(Project.team_id == team_id)
    envs = (await session.execute(query)).all()
    production = {e.id: (t, p.name) for e, p, t in envs if e.name in production_names(p)}
    if not production:
        return []
    rows = list(
        await session.scalars(
            select(Deployment)
            .where(
                Deployment.environment_id.in_(list(production)),
                Deployment.finished_at.is_not(None),
                Deployment.finished_at >= start,
                Deployment.phase.in_([Phase.SUCCEEDED.value, Phase.ABORTED.value]),
            )
            .order_by(Deployment.environment_id, Deployment.number)
        )
    )
    by_env: dict[uuid.UUID, list[Deployment]] = defaultdict(list)
    for row in rows:
        by_env[row.environment_id].append(row)
    out: list[Change] = []
    for env_id, history in by_env.items():
        for row in history:
            finished = as_utc(row.finished_at) if row.finished_at else None
            if row.kind == ROLLBACK or finished is None or finished >= end:
                continue
            succeeded = row.phase == Phase.SUCCEEDED.value
            team, project = production[env_id]
            out.append(
                Change(
                    team=team,
                    project=project,
                    number=row.number,
                    succeeded=succeeded,
                    started_at=as_utc(row.started_at or row.created_at),
                    finished_at=finished,
                    committed_at=as_utc(row.committed_at) if row.committed_at else None,
                    aborted_by_rule=not succeeded and row.message.startswith(RULES),
                    recovered_at=_recovered(row, history) if succeeded else None,
                )
            )
    return out


def _recovered(row: Deployment, history: list[Deployment]) -> datetime | None:
    """When a succeeded deploy's failure was recovered: a rollback from it succeeded, or
    the next deploy that succeeded after it was marked as its fix."""
    for later in history:
        if later.number <= row.number or later.phase != Phase.SUCCEEDED.value:
            continue
        if later.kind == ROLLBACK and later.rollback_of == row.number:
            return as_utc(later.finished_at) if later.finished_at else None
        if later.kind != ROLLBACK:
            return as_utc(later.finished_at) if later.fix and later.finished_at else None
    return None
