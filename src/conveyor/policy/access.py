"""What a principal may reach: a team or a project found by name (or id), with the role
the request needs. Another team's objects are NotFound, never Forbidden, so that their
existence does not leak; a role too low is Forbidden."""

from __future__ import annotations

from conveyor.domain.errors import NotFound
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.storage import projects
from conveyor.storage.database import Session
from conveyor.storage.projects import ProjectRecord, TeamRecord


async def team_named(session: Session, who: Principal, name: str, role: Role) -> TeamRecord:
    """The team called `name`, if the caller may act on it with `role`."""
    team = await projects.team_named(session, name)
    if team is None:
        raise NotFound(f"no team {name!r}")
    who.require(team.id, role, f"team {name!r}")
    return team


async def project_named(
    session: Session, who: Principal, team: str, name: str, role: Role
) -> tuple[ProjectRecord, TeamRecord]:
    """The project `team/name` and its team, if the caller may act on it with `role`."""
    row = await projects.with_team(session, team, name)
    if row is None or not who.can_see(row[1].id):
        raise NotFound(f"no project {team}/{name}")
    who.require(row[1].id, role, f"project {team}/{name}")
    return row[0], row[1]
