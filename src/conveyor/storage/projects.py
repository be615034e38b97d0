"""Teams and projects: looked up by name (or by id, as GitLab's API takes either), listed,
created, changed."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.domain.audit import Action
from conveyor.domain.clock import as_utc, utcnow
from conveyor.storage import audit
from conveyor.storage.database import Database, Session
from conveyor.storage.tables import Project, Team


@dataclass(frozen=True, slots=True)
class TeamRecord:
    id: uuid.UUID
    name: str
    max_running: int | None = None
    """Its quota of running jobs (None: none)."""
    cache_hits: int = 0
    cache_misses: int = 0


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    """A project as storage hands it out: a value, not a row (nothing loads lazily,
    nothing is written back by changing it; `change` writes)."""

    id: uuid.UUID
    team_id: uuid.UUID
    name: str
    repo_url: str
    config_path: str = "conveyor.yml"
    provider: str = "git"
    hook_secret: bytes | None = None
    """Sealed (storage.secrets), as every secret below."""
    hook_secret_old: bytes | None = None
    hook_secret_old_until: datetime | None = None
    status_api: str | None = None
    status_repo: str | None = None
    status_token: bytes | None = None
    artifact_retention_days: int = 30
    production: list[str] | None = None
    required_teams: list[str] | None = None
    created_at: datetime = field(default_factory=utcnow)


def team_of(row: Team) -> TeamRecord:
    return TeamRecord(
        id=row.id,
        name=row.name,
        max_running=row.max_running,
        cache_hits=row.cache_hits,
        cache_misses=row.cache_misses,
    )


def project_of(row: Project) -> ProjectRecord:
    return ProjectRecord(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        repo_url=row.repo_url,
        config_path=row.config_path,
        provider=row.provider,
        hook_secret=row.hook_secret,
        hook_secret_old=row.hook_secret_old,
        hook_secret_old_until=as_utc(row.hook_secret_old_until)
        if row.hook_secret_old_until
        else None,
        status_api=row.status_api,
        status_repo=row.status_repo,
        status_token=row.status_token,
        artifact_retention_days=row.artifact_retention_days,
        production=[str(p) for p in row.production] if row.production is not None else None,
        required_teams=[str(t) for t in row.required_teams]
        if row.required_teams is not None
        else None,
        created_at=as_utc(row.created_at),
    )


def _named(name_column: Any, id_column: Any, value: str) -> ColumnElement[bool]:
    """`value` as a name, or (as GitLab's API takes either) as the id: a name wins."""
    try:
        as_id = uuid.UUID(value)
    except ValueError:
        return cast(ColumnElement[bool], name_column == value)
    return or_(name_column == value, id_column == as_id)


async def by_name(session: Session, team: str, name: str) -> ProjectRecord | None:
    """The project `team/name`, if it exists."""
    found: Project | None = await session.scalar(
        select(Project)
        .join(Team, Team.id == Project.team_id)
        .where(_named(Team.name, Team.id, team), _named(Project.name, Project.id, name))
        .order_by(Team.name != team, Project.name != name)
        .limit(1)
    )
    return project_of(found) if found is not None else None


async def with_team(
    session: Session, team: str, name: str
) -> tuple[ProjectRecord, TeamRecord] | None:
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
    return (project_of(row[0]), team_of(row[1])) if row is not None else None


async def all_projects(session: Session) -> list[ProjectRecord]:
    return [project_of(row) for row in await session.scalars(select(Project))]


class AlreadyExists(Exception):
    """A team or project of that name exists."""


async def team_named(session: Session, name: str) -> TeamRecord | None:
    found: Team | None = await session.scalar(
        select(Team).where(_named(Team.name, Team.id, name)).order_by(Team.name != name).limit(1)
    )
    return team_of(found) if found is not None else None


async def teams(
    session: Session, *, only: uuid.UUID | None, every: bool = False
) -> list[TeamRecord]:
    """Every team by name (`every`), else only team `only` (none for None)."""
    query = select(Team).order_by(Team.name)
    if not every:
        query = query.where(Team.id == only)
    return [team_of(row) for row in await session.scalars(query)]


async def create_team(db: Database, name: str, max_running: int | None, actor: str) -> TeamRecord:
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
    return team_of(team)


async def set_quota(session: Session, team: TeamRecord, max_running: int | None) -> TeamRecord:
    """The team's quota of running jobs (None: none)."""
    await session.execute(update(Team).where(Team.id == team.id).values(max_running=max_running))
    return dataclasses.replace(team, max_running=max_running)


async def create_project(db: Database, project: ProjectRecord, team: str, actor: str) -> None:
    """Store a new project (in its own transaction, audited); AlreadyExists when its
    name is taken in the team."""
    try:
        async with db.transaction() as session:
            session.add(Project(**dataclasses.asdict(project)))
            await session.flush()
            detail = {"repo_url": project.repo_url, "provider": project.provider}
            target = f"{team}/{project.name}"
            await audit.record(
                session, project.team_id, actor, Action.PROJECT_CREATE, target, detail
            )
    except IntegrityError as exc:
        raise AlreadyExists(f"project {team}/{project.name} exists") from exc


async def change(session: Session, project: ProjectRecord, **values: Any) -> ProjectRecord:
    """Change a project's columns (retention, production, webhook secrets); the project
    as it is now."""
    await session.execute(update(Project).where(Project.id == project.id).values(**values))
    return dataclasses.replace(project, **values)


async def listing(
    session: Session, *, only: uuid.UUID | None, every: bool = False
) -> list[tuple[ProjectRecord, TeamRecord]]:
    """Every project with its team by name (`every`), else only team `only`'s (none for
    None)."""
    query = select(Project, Team).join(Team, Team.id == Project.team_id)
    if not every:
        query = query.where(Team.id == only)
    rows = await session.execute(query.order_by(Team.name, Project.name))
    return [(project_of(project), team_of(team)) for project, team in rows.all()]
