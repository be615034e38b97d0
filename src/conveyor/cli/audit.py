"""`conveyor audit`: read an audit chain, and verify it here, on the client, from the
entries the server shows (domain.audit): a changed, removed or inserted entry is named."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.client import ApiClient, JsonOpt, show
from conveyor.cli.console import EXIT_FAILED, err, out
from conveyor.cli.options import ServerOpt, TokenOpt
from conveyor.domain import audit as chain
from conveyor.protocol.api import AuditEntryOut, AuditHeadOut, AuditPage

app = typer.Typer(help="The audit log: who did what, when, chained by hash.", no_args_is_help=True)

TeamArg = Annotated[
    str | None, typer.Argument(help="The team; none: the company's chain (the admin's).")
]
PAGE = 500


def _path(team: str | None) -> str:
    return f"/api/v1/teams/{team}/audit" if team else "/api/v1/audit"


def _entries(remote: ApiClient, team: str | None) -> Iterator[tuple[AuditEntryOut, AuditHeadOut]]:
    """Every entry of the chain, oldest first, each with the head the server showed."""
    after: int | None = 0
    while after is not None:
        params = {"after": after, "limit": PAGE}
        page = remote.answer(AuditPage, "GET", _path(team), params=params)
        for entry in page.items:
            yield entry, page.head
        after = page.next


@app.command("list")
def list_entries(
    server: ServerOpt,
    token: TokenOpt,
    team: TeamArg = None,
    after: Annotated[int, typer.Option("--after", help="Entries numbered after this.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The chain's entries, oldest first."""
    remote = ApiClient(server, token, err)
    data = remote.answer(AuditPage, "GET", _path(team), params={"after": after, "limit": limit})
    if as_json:
        show(data, True, "")
        return
    table = Table("#", "at", "actor", "action", "target", "detail")
    for entry in data.items:
        detail = ", ".join(f"{k}={v}" for k, v in entry.detail.items())
        table.add_row(
            str(entry.seq),
            entry.at,
            escape(entry.actor),
            entry.action,
            escape(entry.target),
            escape(detail),
        )
    out.print(table)
    if data.next is not None:
        out.print(f"more: --after {data.next}")


@app.command("verify")
def verify(server: ServerOpt, token: TokenOpt, team: TeamArg = None) -> None:
    """Recompute the chain from its first entry: exit 0 when every number, link and hash
    adds up to the head; else name the first broken entry and exit 1."""
    remote = ApiClient(server, token, err)
    head = AuditHeadOut(seq=0, hash=chain.GENESIS)
    entries: list[dict[str, Any]] = []
    for entry, seen in _entries(remote, team):
        entries.append(entry.model_dump(mode="json"))
        head = seen
    if not entries:
        head = remote.answer(AuditPage, "GET", _path(team), params={"limit": 1}).head
    broken = chain.verify(entries, (head.seq, head.hash))
    name = f"team {team}" if team else "the company"
    if broken is not None:
        err.print(f"[red]broken:[/] the audit chain of {name} fails at {escape(str(broken))}")
        raise typer.Exit(EXIT_FAILED)
    out.print(f"the audit chain of {name} holds: {len(entries)} entries, head {head.hash[:16]}…")


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="audit")
