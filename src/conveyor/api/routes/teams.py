"""Teams, their tokens, and runner registration tokens."""

from __future__ import annotations

from fastapi import APIRouter

from conveyor.api.auth import REGISTRATION_PREFIX, TEAM_PREFIX, new_token, token_hash
from conveyor.api.errors import ApiError
from conveyor.api.state import Caller, State
from conveyor.domain.audit import Action
from conveyor.domain.roles import Role
from conveyor.policy.access import team_named
from conveyor.protocol.api import (
    RunnerOut,
    RunnerTokenIn,
    TeamIn,
    TeamOut,
    TeamPatch,
    TokenIn,
    TokenOut,
)
from conveyor.scheduler import runners
from conveyor.storage import audit, projects, tokens
from conveyor.storage.projects import AlreadyExists

router = APIRouter(prefix="/api/v1", tags=["teams"])


@router.post("/teams", status_code=201)
async def create_team(body: TeamIn, state: State, who: Caller) -> TeamOut:
    if not who.is_admin:
        raise ApiError(403, "forbidden", "only the admin creates teams")
    try:
        team = await projects.create_team(state.db, body.name, body.max_running, who.display)
    except AlreadyExists as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
    return TeamOut(id=team.id, name=team.name, max_running=team.max_running)


@router.patch("/teams/{team}")
async def update_team(team: str, body: TeamPatch, state: State, who: Caller) -> TeamOut:
    """Set the team's quota of running jobs (admin); `null` removes it."""
    if not who.is_admin:
        raise ApiError(403, "forbidden", "only the admin sets quotas")
    async with state.db.transaction() as session:
        row = await team_named(session, who, team, Role.ADMIN)
        row = await projects.set_quota(session, row, body.max_running)
        detail = {"max_running": body.max_running}
        await audit.record(session, row.id, who.display, Action.TEAM_CHANGE, row.name, detail)
    return TeamOut(id=row.id, name=row.name, max_running=row.max_running)


@router.get("/teams")
async def list_teams(state: State, who: Caller) -> list[TeamOut]:
    async with state.db.transaction() as session:
        rows = await projects.teams(session, only=who.team_id, every=who.is_admin)
        return [
            TeamOut(
                id=t.id,
                name=t.name,
                max_running=t.max_running,
                cache_hits=t.cache_hits,
                cache_misses=t.cache_misses,
            )
            for t in rows
        ]


@router.post("/teams/{team}/tokens", status_code=201)
async def create_token(team: str, body: TokenIn, state: State, who: Caller) -> TokenOut:
    async with state.db.transaction() as session:
        row = await team_named(session, who, team, Role.OWNER)
        token = new_token(TEAM_PREFIX)
        created = await tokens.add_api_token(
            session, row.id, body.name, body.parsed_role.label, token_hash(token)
        )
        detail = {"name": body.name, "role": body.parsed_role.label}
        await audit.record(session, row.id, who.display, Action.TOKEN_CREATE, row.name, detail)
    return TokenOut(id=created.id, token=token)


"""A runner asks for work (a long poll of at most 75 s) or renews a lease more often than
this; one not seen for longer is listed offline."""


@router.get("/runners")
async def list_runners(state: State, who: Caller) -> list[RunnerOut]:
    """The registered runners: the admin sees every one; a team's token, the team's own
    and the shared ones. Newest seen first, with the jobs each runs now."""
    return await runners.listing(state.db, who)


@router.post("/runner-tokens", status_code=201)
async def create_runner_token(body: RunnerTokenIn, state: State, who: Caller) -> TokenOut:
    async with state.db.transaction() as session:
        team_id = None
        if body.team is not None:
            team_id = (await team_named(session, who, body.team, Role.MAINTAINER)).id
        elif not who.is_admin:
            raise ApiError(403, "forbidden", "only the admin creates shared runner tokens")
        token = new_token(REGISTRATION_PREFIX)
        created = await tokens.add_registration(session, team_id, token_hash(token))
        target = body.team or "shared runners"
        action = Action.RUNNER_TOKEN_CREATE
        await audit.record(session, team_id, who.display, action, target, {"id": str(created.id)})
    return TokenOut(id=created.id, token=token)
