"""`conveyor dora TEAM`: DORA's four keys for a team and each of its services, with the
band of each (docs/dora.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from conveyor.cli.client import ApiClient, JsonOpt, show
from conveyor.cli.console import err, out
from conveyor.cli.options import ServerOpt, TokenOpt
from conveyor.protocol.api import DoraFigures, DoraOut

BAND_COLOURS = {"elite": "green", "high": "cyan", "medium": "yellow", "low": "red"}


def dora(
    team: Annotated[str, typer.Argument(help="The team.")],
    server: ServerOpt,
    token: TokenOpt,
    window: Annotated[str, typer.Option("--window", help="e.g. 7d, 30d, 90d.")] = "30d",
    as_json: JsonOpt = False,
) -> None:
    """Deployment frequency, lead time, change failure rate and recovery time."""
    remote = ApiClient(server, token, err)
    data = remote.answer(DoraOut, "GET", f"/api/v1/teams/{team}/dora", params={"window": window})
    if as_json:
        show(data, True, "")
        return
    out.print(f"[bold]{data.team}[/] over {data.window_days:g} days to {data.end}")
    table = Table("service", "deploys/day", "lead time", "failure rate", "recovery", "band")
    for name, row in [("(all)", data.overall), *sorted(data.services.items())]:
        table.add_row(name, *cells(row))
    out.print(table)


def cells(row: DoraFigures) -> list[str]:
    bands = row.bands
    rate = row.change_failure_rate
    return [
        _banded(f"{row.deploys_per_day:.2f} ({row.deployments})", bands, "deployment_frequency"),
        _banded(duration(row.lead_time_seconds), bands, "lead_time"),
        _banded(
            "—" if rate is None else f"{rate:.0%} ({row.failures}/{row.changes})",
            bands,
            "change_failure_rate",
        ),
        _banded(duration(row.recovery_seconds), bands, "recovery"),
        _band(row.band),
    ]


def duration(seconds: float | None) -> str:
    """`—`, `42s`, `5.2m`, `3.1h`, `2.4d`."""
    if seconds is None:
        return "—"
    for unit, size in (("d", 86_400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _banded(text: str, bands: dict[str, str | None], key: str) -> str:
    band = bands.get(key)
    return text if band is None else f"[{BAND_COLOURS[band]}]{text}[/]"


def _band(band: str | None) -> str:
    return "—" if band is None else f"[{BAND_COLOURS[band]}]{band}[/]"


def register(app: typer.Typer) -> None:
    app.command()(dora)
