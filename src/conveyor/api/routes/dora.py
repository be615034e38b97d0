"""`GET /api/v1/teams/{team}/dora?window=30d`: DORA's four keys for a team and each of
its services, from their production deployments (docs/dora.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api import patterns
from conveyor.api.errors import ApiError
from conveyor.api.routes.teams import team_named
from conveyor.api.schemas import DoraFigures, DoraOut
from conveyor.api.state import Caller, State
from conveyor.domain.dora import Change, Figures, figures
from conveyor.domain.roles import Role
from conveyor.pipeline.durations import parse_duration
from conveyor.storage import dora
from conveyor.storage.tables import utcnow

router = APIRouter(prefix="/api/v1/teams", tags=["teams"])
DAY = 86_400.0


def window_seconds(text: str) -> float:
    """`30d`, `12h`, `90d`…: at least an hour, at most a year (422 otherwise)."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"window: {exc}") from exc
    if not 3600 <= seconds <= 366 * DAY:
        raise ApiError(422, "invalid_request", "window: between 1h and 366d")
    return seconds


def figures_out(found: Figures) -> DoraFigures:
    return DoraFigures(
        deployments=found.deployments,
        deploys_per_day=round(found.per_day, 4),
        lead_time_seconds=found.lead_time_s,
        lead_times=found.lead_times,
        changes=found.changes,
        failures=found.failures,
        change_failure_rate=found.failure_rate,
        recovery_seconds=found.recovery_s,
        recoveries=found.recoveries,
        bands={k: (v.value if v else None) for k, v in found.bands.items()},
        band=found.band.value if found.band else None,
    )


def by_service(changes: list[Change], days: float) -> dict[str, Figures]:
    projects = sorted({c.project for c in changes})
    return {p: figures([c for c in changes if c.project == p], days) for p in projects}


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
    seconds = window_seconds(window)
    end = utcnow()
    start = end - timedelta(seconds=seconds)
    async with state.db.transaction() as session:
        row = await team_named(session, who, team, Role.VIEWER)
        changes = await dora.changes(session, row.id, start, end)
    days = seconds / DAY
    return DoraOut(
        team=row.name,
        window_days=round(days, 3),
        start=start.isoformat(),
        end=end.isoformat(),
        overall=figures_out(figures(changes, days)),
        services={p: figures_out(f) for p, f in by_service(changes, days).items()},
    )
