"""`conveyor host|host-token|pool`: the fleet from the command line, over HTTP
(docs/fleet.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.client import ApiClient, JsonOpt, show
from conveyor.cli.console import EXIT_INVALID, err, out
from conveyor.cli.options import ServerOpt, TokenOpt
from conveyor.protocol.api import HostOut, HostTokenOut

host = typer.Typer(help="The hosts agents run on: list, show, drain, undrain, remove.")
host_token = typer.Typer(help="Tokens agents register hosts with: create, list, revoke.")
pool = typer.Typer(help="Shared pools of hosts, opened to teams by the admin.")

HostArg = Annotated[str, typer.Argument(help="The host's name.")]


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**30:.1f}GiB"


@host.command("list")
def host_list(server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """The hosts your team runs on (the admin: every host)."""
    remote = ApiClient(server, token, err)
    found = remote.answers(HostOut, "GET", "/api/v1/hosts")
    if as_json or not found:
        show(found, as_json, "no hosts: start `conveyor agent` on a machine")
        return
    table = Table()
    for name in ("host", "state", "address", "team/pool", "labels", "slots", "memory", "seen"):
        table.add_column(name)
    for h in found:
        labels = ",".join(f"{k}={v}" for k, v in sorted(h.labels.items()))
        table.add_row(
            h.name + (" (router)" if h.router else ""),
            h.state,
            h.address,
            h.team or f"pool {h.pool}",
            escape(labels),
            "-" if h.slots is None else str(h.slots),
            _size(h.memory),
            h.seen_at[:19],
        )
    out.print(table)


@host.command("show")
def host_show(name: HostArg, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """One host: its state, labels, capacity and agent."""
    found = ApiClient(server, token, err).answer(HostOut, "GET", f"/api/v1/hosts/{name}")
    labels = ",".join(f"{k}={v}" for k, v in sorted(found.labels.items())) or "-"
    show(
        found,
        as_json,
        f"{found.name}: {found.state}, {found.address}, labels {escape(labels)}, "
        f"slots {found.slots or '-'}, memory {_size(found.memory)}, agent {found.version}, "
        f"seen {found.seen_at}",
    )


@host.command("drain")
def host_drain(name: HostArg, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """Place nothing new on the host and move its instances elsewhere."""
    found = ApiClient(server, token, err).answer(HostOut, "POST", f"/api/v1/hosts/{name}/drain")
    show(found, as_json, f"host {found.name}: {found.state}")


@host.command("undrain")
def host_undrain(
    name: HostArg, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False
) -> None:
    """Place instances on the host again."""
    remote = ApiClient(server, token, err)
    found = remote.answer(HostOut, "POST", f"/api/v1/hosts/{name}/undrain")
    show(found, as_json, f"host {found.name}: {found.state}")


@host.command("remove")
def host_remove(name: HostArg, server: ServerOpt, token: TokenOpt) -> None:
    """Forget a host that is lost or draining."""
    ApiClient(server, token, err).call("DELETE", f"/api/v1/hosts/{name}")
    out.print(f"host {name} removed")


@host_token.command("create")
def host_token_create(
    server: ServerOpt,
    token: TokenOpt,
    team: Annotated[str | None, typer.Option("--team", help="For this team's hosts.")] = None,
    pool_: Annotated[
        str | None, typer.Option("--pool", help="For a shared pool's hosts (admin).")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="What it is for.")] = "hosts",
    as_json: JsonOpt = False,
) -> None:
    """A token `conveyor agent --token` registers hosts with. Shown once."""
    if (team is None) == (pool_ is None):
        err.print("error: a host token is for a team (--team) or for a shared pool (--pool)")
        raise typer.Exit(EXIT_INVALID)
    path = f"/api/v1/teams/{team}/host-tokens" if team else f"/api/v1/pools/{pool_}/host-tokens"
    remote = ApiClient(server, token, err)
    made = remote.answer(HostTokenOut, "POST", path, json={"name": name})
    show(made, as_json, str(made.token))


@host_token.command("list")
def host_token_list(server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """Host tokens of your team (the admin: every one)."""
    found = ApiClient(server, token, err).answers(HostTokenOut, "GET", "/api/v1/host-tokens")
    if as_json or not found:
        show(found, as_json, "no host tokens")
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=36)
    for column in ("name", "team/pool", "made by", "made", "revoked"):
        table.add_column(column)
    for t in found:
        table.add_row(
            str(t.id),
            escape(t.name),
            t.team or f"pool {t.pool}",
            escape(t.created_by),
            t.created_at[:19],
            (t.revoked_at or "")[:19],
        )
    out.print(table)


@host_token.command("revoke")
def host_token_revoke(
    token_id: Annotated[uuid.UUID, typer.Argument(help="The token's id (`host-token list`).")],
    server: ServerOpt,
    token: TokenOpt,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a host token: its hosts' agents are refused at their next call."""
    remote = ApiClient(server, token, err)
    found = remote.answer(HostTokenOut, "DELETE", f"/api/v1/host-tokens/{token_id}")
    show(found, as_json, f"host token {found.name} revoked")


@pool.command("share")
def pool_share(
    name: Annotated[str, typer.Argument(help="The pool.")],
    team: Annotated[str, typer.Argument(help="The team it opens to.")],
    server: ServerOpt,
    token: TokenOpt,
) -> None:
    """Open a shared pool's hosts to a team (admin)."""
    ApiClient(server, token, err).call("PUT", f"/api/v1/pools/{name}/teams/{team}")
    out.print(f"pool {name} is open to team {team}")


@pool.command("unshare")
def pool_unshare(
    name: Annotated[str, typer.Argument(help="The pool.")],
    team: Annotated[str, typer.Argument(help="The team.")],
    server: ServerOpt,
    token: TokenOpt,
) -> None:
    """Close a shared pool to a team (admin)."""
    ApiClient(server, token, err).call("DELETE", f"/api/v1/pools/{name}/teams/{team}")
    out.print(f"pool {name} is closed to team {team}")


def register(app: typer.Typer) -> None:
    app.add_typer(host, name="host")
    app.add_typer(host_token, name="host-token")
    app.add_typer(pool, name="pool")
