"""Teams and projects: looked up by name, listed, created, changed."""

from __future__ import annotations

from sqlalchemy import select

from conveyor.storage.database import Session
from conveyor.storage.tables import Project, Team


async def by_name(session: Session, team: str, name: str) -> Project | None:
    """The project `team/name`, if it exists."""
    found: Project | None = await session.scalar(
        select(Project)
        .join(Team, Team.id == Project.team_id)
        .where(Team.name == team, Project.name == name)
    )
    return found


async def with_team(session: Session, team: str, name: str) -> tuple[Project, Team] | None:
    """The project `team/name` with its team, if it exists."""
    row = (
        await session.execute(
            select(Project, Team)
            .join(Team, Team.id == Project.team_id)
            .where(Team.name == team, Project.name == name)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def all_projects(session: Session) -> list[Project]:
    return list((await session.scalars(select(Project))).all())
