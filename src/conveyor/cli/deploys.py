"""`conveyor deploy|promote|pause|resume|abort|rollback|status|unpin|risk`: the deployment
manager from the command line, over HTTP. `deploy --wait` exits 0 when the deployment
succeeded and 1 when it was aborted or failed."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.client import ApiClient, JsonOpt, show
from conveyor.cli.console import err, out
from conveyor.cli.options import ServerOpt, TokenOpt
from conveyor.protocol.api import DeploymentOut, EnvironmentOut, RiskOut

ProjectArg = Annotated[str, typer.Argument(help="TEAM/PROJECT", metavar="TEAM/PROJECT")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="The environment.")]
FINAL = {"succeeded", "aborted", "failed"}


def env_path(project: str, env: str) -> str:
    return f"/api/v1/projects/{project}/environments/{env}"


def deploy(
    project: ProjectArg,
    env: EnvOpt,
    artifact: Annotated[str, typer.Option("--artifact", help="The digest sha256:….")],
    server: ServerOpt,
    token: TokenOpt,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            help="rolling | blue-green | canary (default: the "
            "artifact's conveyor.yml, else rolling).",
        ),
    ] = None,
    steps: Annotated[
        str | None, typer.Option("--steps", help='Canary steps, e.g. "10,pause=5s,50,pause,100".')
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="ordered | newest-wins")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow it to the end.")] = False,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    fix: Annotated[
        bool,
        typer.Option("--fix", help="It fixes the revision before it, a failed change for DORA."),
    ] = False,
    emergency: EmergencyOpt = False,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy an artifact to an environment (created at its first deploy). It may wait
    at its gate: for approvals, a wait timer, a freeze window (docs/policy.md)."""
    remote = ApiClient(server, token, err)
    body: dict[str, Any] = {"environment": env, "artifact": artifact}
    body |= emergency_body(emergency, reason)
    if fix:
        body["fix"] = True
    if strategy:
        body["strategy"] = strategy
    if steps:
        body["steps"] = steps
    if queue:
        body["queue_policy"] = queue
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    path = f"/api/v1/projects/{project}/deployments"
    made = remote.answer(DeploymentOut, "POST", path, json=body, headers=headers)
    if made.awaiting_approval:
        reasons = "; ".join(made.approval.reasons) if made.approval else ""
        err.print(
            f"{env} revision {made.number} waits for approval "
            f"({reasons}): `conveyor approve {made.id}`"
        )
    if not wait:
        show(made, as_json, f"{env} revision {made.number} {made.phase} ({made.strategy})")
        return
    err.print(f"{env} revision {made.number}: {made.strategy} of {made.digest[:19]}…")
    final = follow(remote, project, env, made.number)
    show(final, as_json, f"{env} revision {final.number} {final.phase}")
    raise typer.Exit(0 if final.phase == "succeeded" else 1)


EmergencyOpt = Annotated[
    bool,
    typer.Option(
        "--emergency",
        help="Past freezes and approvals, without the rollout's pauses and analyses "
        "(never its health checks or draining); needs the environment's emergency_role "
        "and --reason; audited and announced.",
    ),
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (an emergency's).")]


def emergency_body(emergency: bool, reason: str | None) -> dict[str, Any]:
    if not emergency:
        return {}
    if not reason:
        raise typer.BadParameter("an emergency needs --reason", param_hint="--reason")
    return {"emergency": reason}


def follow(remote: ApiClient, project: str, env: str, number: int) -> DeploymentOut:
    """Print each change of phase, step and split until the deployment ends."""
    last = ""
    while True:
        path = f"{env_path(project, env)}/deployments/{number}"
        row = remote.answer(DeploymentOut, "GET", path)
        status = remote.answer(EnvironmentOut, "GET", env_path(project, env))
        traffic = status.traffic
        mine = status.deployment is not None and status.deployment.number == number
        step = status.step if mine else ""
        line = (
            f"  {row.phase:<11} {step or '':<32} stable {traffic.stable:g}% "
            f"canary {traffic.canary:g}%"
        )
        if line != last:
            err.print(escape(line) + (f"  {escape(row.message)}" if row.message else ""))
            last = line
        if row.phase in FINAL:
            return row
        time.sleep(0.25)


def _command(
    project: str,
    env: str,
    what: str,
    server: str,
    token: str,
    as_json: bool,
    body: dict[str, Any] | None = None,
) -> None:
    remote = ApiClient(server, token, err)
    path = f"{env_path(project, env)}/{what}"
    data = remote.answer(DeploymentOut, "POST", path, json=body or {})
    show(data, as_json, f"{env} revision {data.number}: {what} → {data.phase}")


def promote(
    project: ProjectArg,
    env: EnvOpt,
    server: ServerOpt,
    token: TokenOpt,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining step.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Go past the current pause (or, with --full, straight to 100 %)."""
    _command(project, env, "promote", server, token, as_json, {"full": full})


def pause(
    project: ProjectArg, env: EnvOpt, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False
) -> None:
    """Hold the deployment at its current step."""
    _command(project, env, "pause", server, token, as_json)


def resume(
    project: ProjectArg, env: EnvOpt, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False
) -> None:
    """Carry on after `pause`."""
    _command(project, env, "resume", server, token, as_json)


def abort(
    project: ProjectArg, env: EnvOpt, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False
) -> None:
    """Send all traffic back to the stable revision now, then remove the canary."""
    _command(project, env, "abort", server, token, as_json)


def rollback(
    project: ProjectArg,
    env: EnvOpt,
    server: ServerOpt,
    token: TokenOpt,
    to: Annotated[
        int | None, typer.Option("--to", help="The revision (default: the previous).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait")] = False,
    emergency: EmergencyOpt = False,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back to an earlier revision, pinning the current one as bad. Never held by a
    freeze, approvals or stop-the-line."""
    remote = ApiClient(server, token, err)
    body: dict[str, Any] = {"to": to} | emergency_body(emergency, reason)
    made = remote.answer(DeploymentOut, "POST", f"{env_path(project, env)}/rollback", json=body)
    err.print(
        f"{env}: rollback to {made.digest[:19]}… as revision {made.number} "
        f"({'traffic switch' if made.strategy == 'switch' else 'rolling redeploy'})"
    )
    if wait:
        made = follow(remote, project, env, made.number)
    show(made, as_json, f"{env} revision {made.number} {made.phase}")
    if wait and made.phase != "succeeded":
        raise typer.Exit(1)


def unpin(
    project: ProjectArg,
    env: EnvOpt,
    digest: Annotated[str, typer.Argument(help="sha256:…")],
    server: ServerOpt,
    token: TokenOpt,
) -> None:
    """Clear a revision's bad pin (who and when are recorded)."""
    ApiClient(server, token, err).call("DELETE", f"{env_path(project, env)}/pins/{digest}")
    out.print(f"{digest} may be deployed to {env} again")


def status(
    project: ProjectArg,
    server: ServerOpt,
    token: TokenOpt,
    env: Annotated[str | None, typer.Option("--env", "-e")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revision, URL, phase, step, traffic split, instances with health, and history."""
    remote = ApiClient(server, token, err)
    if env is not None:
        data = remote.answer(EnvironmentOut, "GET", env_path(project, env))
        if as_json:
            show(data, True, "")
            return
        _render(data)
        return
    envs = remote.answers(EnvironmentOut, "GET", f"/api/v1/projects/{project}/environments")
    if as_json:
        show(envs, True, "")
        return
    for data in envs:
        _render(data)


def _render(data: EnvironmentOut) -> None:
    traffic = data.traffic
    current = data.deployment
    where = f"{escape(data.team)}/{escape(data.project)} {escape(data.environment)}"
    step = f" step {escape(data.step)}" if data.step else ""
    if current is not None and current.number != data.revision:
        # The phase and step are the deploying revision's, never the stable one's.
        head = f"  revision {data.revision} stable; revision {current.number} {data.phase}{step}"
    else:
        head = f"  revision {data.revision}  {data.phase}{step}"
    out.print(f"[bold]{where}[/]{head}")
    out.print(f"  url {data.url}  (preview {data.preview_url})")
    if data.routers:
        out.print(f"  routers {', '.join(data.routers)}")
    out.print(f"  traffic: stable {traffic.stable:g}%  canary {traffic.canary:g}%")
    if current is not None and current.message:
        why = "paused" if current.phase == "paused" else current.phase
        out.print(f"  revision {current.number} {why}: {escape(current.message)}")
    for pin in data.pins:
        out.print(f"  [red]pinned[/] {pin.digest[:19]}… {escape(pin.reason)}")
    table = Table("revision", "role", "port", "state", "healthy", "restarts")
    for inst in data.instances:
        table.add_row(
            str(inst.revision),
            inst.role,
            str(inst.port),
            inst.state,
            "yes" if inst.healthy else "no",
            str(inst.restarts),
        )
    out.print(table)
    history = Table("rev", "kind", "strategy", "phase", "digest", "by", "message")
    for row in data.history:
        history.add_row(
            str(row.number),
            row.kind,
            row.strategy,
            row.phase,
            row.digest[:19],
            escape(row.started_by),
            escape(row.message),
        )
    out.print(history)


def risk(
    project: ProjectArg,
    env: EnvOpt,
    artifact: Annotated[str, typer.Option("--artifact", help="The digest sha256:….")],
    server: ServerOpt,
    token: TokenOpt,
    as_json: JsonOpt = False,
) -> None:
    """The risk score (0-100) of deploying an artifact to an environment now, with each
    factor's value, weight and contribution."""
    remote = ApiClient(server, token, err)
    path = f"{env_path(project, env)}/risk"
    data = remote.answer(RiskOut, "GET", path, params={"artifact": artifact})
    if as_json:
        show(data, True, "")
        return
    out.print(f"[bold]risk {data.score}[/] of {artifact[:19]}… to {escape(env)} at {data.at}")
    table = Table("factor", "found", "weight", "adds")
    for factor in data.factors:
        table.add_row(
            factor.name,
            escape(factor.value),
            str(factor.weight),
            f"{factor.contribution:g}",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    for command in (deploy, promote, pause, resume, abort, rollback, status, unpin, risk):
        app.command()(command)
