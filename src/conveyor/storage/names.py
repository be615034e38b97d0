"""Team and project names by id, for the labels of metrics: read once per process and
kept (a team or project is never renamed; a deleted one keeps its old entry, which
costs nothing)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from conveyor.storage.database import Session
from conveyor.storage.tables import Project, Team

_teams: dict[uuid.UUID, str] = {}
_projects: dict[uuid.UUID, str] = {}


async def team(session: Session, team_id: uuid.UUID) -> str:
    found = _teams.get(team_id)
    if found is None:
        found = _teams[team_id] = (
            await session.scalar(select(Team.name).where(Team.id == team_id)) or ""
        )
    return found


async def project(session: Session, project_id: uuid.UUID) -> str:
    found = _projects.get(project_id)
    if found is None:
        found = _projects[project_id] = (
            await session.scalar(select(Project.name).where(Project.id == project_id)) or ""
        )
    return found
