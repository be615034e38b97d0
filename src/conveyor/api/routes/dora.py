"""`GET /api/v1/teams/{team}/dora?window=30d`: DORA's four keys for a team and each of
its services, from their production deployments (docs/dora.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api.state import Caller, State
from conveyor.deploy.dora import team_figures
from conveyor.protocol import patterns
from conveyor.protocol.api import DoraOut

router = APIRouter(prefix="/api/v1/teams", tags=["teams"])
DAY = 86_400.0


@router.get("/{team}/dora")
async def team_dora(
    team: str,
    state: State,
    who: Caller,
    window: Annotated[
        str,
        Query(
            max_length=20,
            json_schema_extra=patterns.documented(patterns.duration(3600, 366 * 86400)),
        ),
    ] = "30d",
) -> DoraOut:
    """Deployment frequency, lead time for changes, change failure rate and failed-
    deployment recovery time of the team's production deployments in the window."""
    return await team_figures(state.db, who, team, window)
