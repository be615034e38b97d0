"""Teams and projects: looked up by name (or by id, as GitLab's API takes either), listed,
created, changed."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError

from conveyor.domain.audit import Action
from conveyor.storage import audit
from conveyor.storage.database import Database, Session
from conveyor.storage.tables import Project, Team


def _named(name_column: Any, id_column: Any, value: str) -> ColumnElement[bool]:
    """`value` as a name, or (as GitLab's API takes either) as the id: a name wins."""
    try:
        as_id = uuid.UUID(value)
    except ValueError:
        return cast(ColumnElement[bool], name_column == value)
    return or_(name_column == value, id_column == as_id)


async def by_name(session: Session, team: str, name: str) -> Project | None:
    """The project `team/name`, if it exists."""
    found: Project | None = await session.scalar(
        select(Project)
        .join(Team, Team.id == Project.team_id)
        .where(_named(Team.name, Team.id, team), _named(Project.name, Project.id, name))
        .order_by(Team.name != team, Project.name != name)
        .limit(1)
    )
    return found


async def with_team(session: Session, team: str, name: str) -> tuple[Project, Team] | None:
    """The project `team/name` with its team, if it exists."""
    row = (
        await session.execute(
            select(Project, Team)
            .join(Team, Team.id == Project.team_id)
            .where(_named(Team.name, Team.id, team), _named(Project.name, Project.id, name))
            .order_by(Team.name != team, Project.name != name)
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def all_projects(session: Session) -> list[Project]:
    return list((await session.scalars(select(Project))).all())


class AlreadyExists(Exception):
    """A team or project of that name exists."""


async def team_named(session: Session, name: str) -> Team | None:
    found: Team | None = await session.scalar(
        select(Team).where(_named(Team.name, Team.id, name)).order_by(Team.name != name).limit(1)
    )
    return found


async def teams(session: Session, *, only: uuid.UUID | None, every: bool = False) -> list[Team]:
    """Every team by name (`every`), else only team `only` (none for None)."""
    query = select(Team).order_by(Team.name)
    if not every:
        query = query.where(Team.id == only)
    return list((await session.scalars(query)).all())


async def create_team(db: Database, name: str, max_running: int | None, actor: str) -> Team:
    """A new team (in its own transaction, audited in the company's chain);
    AlreadyExists when the name is taken."""
    try:
        async with db.transaction() as session:
            team = Team(name=name, max_running=max_running)
            session.add(team)
            detail = {"max_running": max_running}
            await audit.record(session, None, actor, Action.TEAM_CREATE, name, detail)
    except IntegrityError as exc:
        raise AlreadyExists(f"team {name!r} exists") from exc
    return team


def set_quota(team: Team, max_running: int | None) -> None:
    """A loaded team's quota (written when its session commits)."""
    team.max_running = max_running


async def create_project(db: Database, project: Project, team: str, actor: str) -> None:
    """Store a new project (in its own transaction, audited); AlreadyExists when its
    name is taken in the team."""
    try:
        async with db.transaction() as session:
            session.add(project)
            await session.flush()
            detail = {"repo_url": project.repo_url, "provider": project.provider}
            target = f"{team}/{project.name}"
            await audit.record(
                session, project.team_id, actor, Action.PROJECT_CREATE, target, detail
            )
    except IntegrityError as exc:
        raise AlreadyExists(f"project {team}/{project.name} exists") from exc


def change(project: Project, **values: Any) -> None:
    """Change a loaded project's columns (retention, webhook secrets), written when its
    session commits."""
    for name, value in values.items():
        setattr(project, name, value)


async def listing(
    session: Session, *, only: uuid.UUID | None, every: bool = False
) -> list[tuple[Project, Team]]:
    """Every project with its team by name (`every`), else only team `only`'s (none for
    None)."""
    query = select(Project, Team).join(Team, Team.id == Project.team_id)
    if not every:
        query = query.where(Team.id == only)
    rows = await session.execute(query.order_by(Team.name, Project.name))
    return [(project, team) for project, team in rows.all()]
