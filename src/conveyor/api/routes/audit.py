"""The audit log, by chain (docs/policy.md, "Audit log"): a team's for its maintainers,
the company's for the admin. Entries come oldest first with the chain's head, so that a
client recomputes the chain itself (`conveyor audit verify`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api.state import Caller, State
from conveyor.policy import audit
from conveyor.protocol.api import AuditPage

router = APIRouter(prefix="/api/v1", tags=["audit"])

After = Annotated[int, Query(ge=0, description="Entries numbered after this one.")]
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get("/teams/{team}/audit")
async def team_audit(
    team: str, state: State, who: Caller, after: After = 0, limit: Limit = 100
) -> AuditPage:
    """The team's chain: deploys, rollbacks, controls, pins, secrets, tokens, projects
    and subscriptions (maintainers and owners)."""
    return await audit.team_page(state.db, who, team, after, limit)


@router.get("/audit")
async def company_audit(
    state: State, who: Caller, after: After = 0, limit: Limit = 100
) -> AuditPage:
    """The company's chain: teams made and changed, shared runner tokens (the admin)."""
    return await audit.company_page(state.db, who, after, limit)
