"""The audit log, by chain (docs/policy.md, "Audit log"): a team's for its maintainers,
the company's for the admin. Entries come oldest first with the chain's head, so that a
client recomputes the chain itself (`conveyor audit verify`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api.errors import ApiError
from conveyor.api.routes.teams import team_named
from conveyor.api.schemas import AuditEntryOut, AuditHeadOut, AuditPage
from conveyor.api.state import Caller, State
from conveyor.domain.roles import Role
from conveyor.storage import audit

router = APIRouter(prefix="/api/v1", tags=["audit"])

After = Annotated[int, Query(ge=0, description="Entries numbered after this one.")]
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get("/teams/{team}/audit")
async def team_audit(
    team: str, state: State, who: Caller, after: After = 0, limit: Limit = 100
) -> AuditPage:
    """The team's chain: deploys, rollbacks, controls, pins, secrets, tokens, projects
    and subscriptions (maintainers and owners)."""
    async with state.db.transaction() as session:
        row = await team_named(session, who, team, Role.MAINTAINER)
        found = await audit.page(session, audit.chain_of(row.id), after, limit)
    return _page(row.name, found, limit)


@router.get("/audit")
async def company_audit(
    state: State, who: Caller, after: After = 0, limit: Limit = 100
) -> AuditPage:
    """The company's chain: teams made and changed, shared runner tokens (the admin)."""
    if not who.is_admin:
        raise ApiError(403, "forbidden", "the company's audit log is the admin's")
    async with state.db.transaction() as session:
        found = await audit.page(session, audit.COMPANY, after, limit)
    return _page(None, found, limit)


def _page(team: str | None, found: audit.Page, limit: int) -> AuditPage:
    items = [AuditEntryOut.model_validate(audit.hashed(e)) for e in found.entries]
    more = len(items) == limit and items[-1].seq < found.head[0]
    return AuditPage(
        team=team,
        items=items,
        head=AuditHeadOut(seq=found.head[0], hash=found.head[1]),
        next=items[-1].seq if more else None,
    )
