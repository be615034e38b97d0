"""DORA's four keys for a team and each of its services, from their production
deployments (docs/dora.md): deployment frequency, lead time for changes, change failure
rate and failed-deployment recovery time."""

from __future__ import annotations

from datetime import timedelta

from conveyor.domain.clock import utcnow
from conveyor.domain.dora import Change, Figures, figures
from conveyor.domain.errors import Invalid
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.pipeline.durations import parse_duration
from conveyor.policy.access import team_named
from conveyor.protocol.api import DoraFigures, DoraOut
from conveyor.storage import dora
from conveyor.storage.database import Database

DAY = 86_400.0


def window_seconds(text: str) -> float:
    """`30d`, `12h`, `90d`…: at least an hour, at most a year."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise Invalid(f"window: {exc}") from exc
    if not 3600 <= seconds <= 366 * DAY:
        raise Invalid("window: between 1h and 366d")
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


async def team_figures(db: Database, who: Principal, team: str, window: str) -> DoraOut:
    """The team's figures over the `window` that ends now."""
    seconds = window_seconds(window)
    end = utcnow()
    start = end - timedelta(seconds=seconds)
    async with db.transaction() as session:
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
