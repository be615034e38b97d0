"""`conveyor approvals|approve|reject|protect|freeze|stop-the-line`: deployment policy from
the command line, over HTTP (docs/policy.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.client import ApiClient, JsonOpt, show
from conveyor.cli.console import EXIT_INVALID, err, out
from conveyor.cli.deploys import EnvOpt, ProjectArg, env_path
from conveyor.cli.options import ServerOpt, TokenOpt
from conveyor.domain.policy import span_text
from conveyor.pipeline.durations import format_duration, parse_duration
from conveyor.protocol.api import (
    ApprovalItemOut,
    DecideIn,
    DeploymentOut,
    FreezeOut,
    ProtectionOut,
    StopOut,
)

DeploymentArg = Annotated[str, typer.Argument(help="The deployment's id (`conveyor approvals`).")]
CommentOpt = Annotated[str, typer.Option("--comment", "-m", help="Why, for the record.")]


def approvals(
    server: ServerOpt,
    token: TokenOpt,
    all_: Annotated[
        bool, typer.Option("--all", help="Also those you may not decide, and why not.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deployments that wait for your approval."""
    remote = ApiClient(server, token, err)
    params = {"all": "true"} if all_ else None
    data = remote.answers(ApprovalItemOut, "GET", "/api/v1/approvals", params=params)
    if as_json:
        show(data, True, "")
        return
    if not data:
        out.print("nothing waits for your approval")
        return
    table = Table()
    # The id whole, never cut by the terminal's width (`approve` takes a unique prefix).
    table.add_column("deployment", no_wrap=True, min_width=36)
    for name in ("where", "rev", "risk", "approvals", "asked by", "why"):
        table.add_column(name)
    for item in data:
        approval = item.approval
        given = sum(1 for d in approval.decisions if d.decision == "approve")
        why = "; ".join(approval.reasons)
        if item.why_not:
            why += f" [dim](you: {escape(item.why_not)})[/]"
        table.add_row(
            item.id,
            f"{item.team}/{item.project} {item.environment}",
            str(item.number),
            "" if approval.risk is None else str(approval.risk),
            f"{given}/{approval.required} {approval.approver_role}",
            escape(item.started_by),
            why,
        )
    out.print(table)


def _deployment_id(remote: ApiClient, given: str) -> str:
    """A deployment's id from a unique prefix of it (as git takes a commit's), looked up
    among those waiting for a decision; a whole id goes as it is."""
    if len(given) == 36:
        return given
    waiting = remote.answers(ApprovalItemOut, "GET", "/api/v1/approvals", params={"all": "true"})
    found = sorted({i.id for i in waiting if i.id.startswith(given.lower())})
    if len(found) == 1:
        return found[0]
    if not found:
        err.print(f"[red]error:[/] no deployment waiting for approval starts with {given!r}")
    else:
        err.print(f"[red]error:[/] {given!r} is ambiguous: {', '.join(found)}")
    raise typer.Exit(EXIT_INVALID)


def _decide(
    verdict: str, deployment: str, comment: str, server: str, token: str, as_json: bool
) -> None:
    remote = ApiClient(server, token, err)
    deployment = _deployment_id(remote, deployment)
    path = f"/api/v1/deployments/{deployment}/{verdict}"
    data = remote.answer(DeploymentOut, "POST", path, json=DecideIn(comment=comment).model_dump())
    if verdict == "approve":
        if data.approval is None or not data.approval.approved_at:
            state = "approval recorded"
        elif data.held:
            state = f"approved; it still waits at its gate: {data.held}"
        else:
            state = "approved: it starts"
    else:
        state = "rejected"
    show(data, as_json, f"{data.environment} revision {data.number}: {state}")


def approve(
    deployment: DeploymentArg,
    server: ServerOpt,
    token: TokenOpt,
    comment: CommentOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Approve a deployment that waits (not your own)."""
    _decide("approve", deployment, comment, server, token, as_json)


def reject(
    deployment: DeploymentArg,
    server: ServerOpt,
    token: TokenOpt,
    comment: CommentOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Reject a deployment that waits: it ends aborted."""
    _decide("reject", deployment, comment, server, token, as_json)


def _seconds(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from exc


def protect(
    project: ProjectArg,
    env: EnvOpt,
    server: ServerOpt,
    token: TokenOpt,
    required_approvals: Annotated[int | None, typer.Option("--required-approvals")] = None,
    approver_role: Annotated[str | None, typer.Option("--approver-role")] = None,
    allowed_branch: Annotated[
        list[str] | None, typer.Option("--allowed-branch", help="A glob; repeat for more.")
    ] = None,
    wait_timer: Annotated[str | None, typer.Option("--wait-timer", help="e.g. 5m")] = None,
    approval_timeout: Annotated[
        str | None, typer.Option("--approval-timeout", help="e.g. 3d")
    ] = None,
    on_timeout: Annotated[str | None, typer.Option("--on-timeout", help="reject | approve")] = None,
    auto_approve_below: Annotated[
        int | None, typer.Option("--auto-approve-below", help="A risk score, 0-100.")
    ] = None,
    emergency_role: Annotated[str | None, typer.Option("--emergency-role")] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA, e.g. Europe/Berlin")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the server's rules.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show an environment's protection rules, or set them on the server (they win over
    the artifact's conveyor.yml `environments:`, field by field)."""
    rules: dict[str, Any] = {
        "required_approvals": required_approvals,
        "approver_role": approver_role,
        "allowed_branches": allowed_branch or None,
        "wait_timer": _seconds(wait_timer, "--wait-timer"),
        "approval_timeout": _seconds(approval_timeout, "--approval-timeout"),
        "on_timeout": on_timeout,
        "auto_approve_below": auto_approve_below,
        "emergency_role": emergency_role,
        "timezone": timezone,
    }
    given = {k: v for k, v in rules.items() if v is not None}
    remote = ApiClient(server, token, err)
    path = f"{env_path(project, env)}/protection"
    if given or clear:
        data = remote.answer(ProtectionOut, "PUT", path, json=given)
    else:
        data = remote.answer(ProtectionOut, "GET", path)
    if as_json:
        show(data, True, "")
        return
    out.print(f"[bold]{escape(project)} {escape(env)}[/] protection")
    table = Table("rule", "in force", "set on the server")
    for name, value in (data.effective or {}).items():
        server_value = data.server.get(name)
        table.add_row(
            name,
            escape(_rule_value(name, value)),
            "" if server_value is None else escape(_rule_value(name, server_value)),
        )
    out.print(table)


DURATION_RULES = ("wait_timer", "approval_timeout")


def _rule_value(name: str, value: Any) -> str:
    """A rule's value as people write it: durations as `3d`, lists comma-separated."""
    if name in DURATION_RULES and isinstance(value, int | float):
        return span_text(float(value))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


freeze = typer.Typer(help="Deploy freeze windows: company-wide, per team, per environment.")


def _freeze_path(scope: str | None) -> str:
    if not scope:
        return "/api/v1/freezes"
    if "/" in scope:
        return f"/api/v1/projects/{scope}/freezes"
    return f"/api/v1/teams/{scope}/freezes"


ScopeArg = Annotated[
    str | None,
    typer.Argument(help="TEAM or TEAM/PROJECT (with --env); none: company-wide (admin)."),
]


@freeze.command("add")
def freeze_add(
    server: ServerOpt,
    token: TokenOpt,
    cron: Annotated[str, typer.Option("--cron", help='Its start, e.g. "0 18 * * 5".')],
    duration: Annotated[str, typer.Option("--duration", help="e.g. 62h")],
    scope: ScopeArg = None,
    env: Annotated[str | None, typer.Option("--env", "-e")] = None,
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone of the cron.")] = "UTC",
    action: Annotated[
        str, typer.Option("--action", help="queue (deploys wait) | refuse (409)")
    ] = "queue",
    reason: Annotated[str, typer.Option("--reason")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Add a freeze window: a cron start and a duration on a time zone's clock."""
    body: dict[str, Any] = {
        "cron": cron,
        "duration": duration,
        "timezone": tz,
        "action": action,
        "reason": reason,
    }
    if env is not None:
        body["environment"] = env
    data = ApiClient(server, token, err).answer(FreezeOut, "POST", _freeze_path(scope), json=body)
    show(data, as_json, f"freeze {data.id} ({data.scope}): next from {data.next_start}")


@freeze.command("list")
def freeze_list(
    server: ServerOpt, token: TokenOpt, scope: ScopeArg = None, as_json: JsonOpt = False
) -> None:
    """The freeze windows at one level (company, a team, a project's environments)."""
    data = ApiClient(server, token, err).answers(FreezeOut, "GET", _freeze_path(scope))
    if as_json:
        show(data, True, "")
        return
    table = Table("id", "scope", "cron", "for", "tz", "action", "now", "next", "reason")
    for w in data:
        table.add_row(
            w.id,
            escape(w.scope),
            w.cron,
            format_duration(w.duration_s),
            w.timezone,
            w.action,
            f"until {w.active_until}" if w.active_until else "",
            w.next_start,
            escape(w.reason),
        )
    out.print(table)


@freeze.command("rm")
def freeze_rm(
    window: Annotated[str, typer.Argument(help="The window's id.")],
    server: ServerOpt,
    token: TokenOpt,
) -> None:
    """Remove a freeze window."""
    ApiClient(server, token, err).call("DELETE", f"/api/v1/freezes/{window}")
    out.print(f"freeze {window} removed")


def stop_the_line(
    switch: Annotated[str, typer.Argument(help="on | off | status")],
    server: ServerOpt,
    token: TokenOpt,
    reason: Annotated[str, typer.Option("--reason")] = "",
    as_json: JsonOpt = False,
) -> None:
    """The company-wide switch (admin): `on` halts every progressing rollout at its next
    step and holds new ones at their gate; rollbacks and emergencies go on."""
    remote = ApiClient(server, token, err)
    if switch == "status":
        data = remote.answer(StopOut, "GET", "/api/v1/stop-the-line")
    elif switch in ("on", "off"):
        body = {"on": switch == "on", "reason": reason}
        data = remote.answer(StopOut, "PUT", "/api/v1/stop-the-line", json=body)
    else:
        raise typer.BadParameter("on, off or status", param_hint="SWITCH")
    state = "ON" if data.on else "off"
    why = f": {data.reason}" if data.on and data.reason else ""
    show(data, as_json, f"stop-the-line is {state}{why}")


def register(app: typer.Typer) -> None:
    for command in (approvals, approve, reject, protect):
        app.command()(command)
    app.command("stop-the-line")(stop_the_line)
    app.add_typer(freeze, name="freeze")
