"""The CLI's client commands, which speak HTTP to a coordinator (`team`, `token`,
`project`, `runner-token`, `secret`, `trigger`, `watch`, `runs`, `logs`, `cancel`,
`retry`, `play`), and the small synchronous client they share (`ApiClient`). The commands
that start processes are in processes.py."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor.cli import githook
from conveyor.cli.console import err, out
from conveyor.cli.options import ServerOpt, TokenOpt
from conveyor.protocol.api import (
    DeliveryOut,
    EventOut,
    ProjectOut,
    RotateOut,
    RunnerOut,
    RunOut,
    RunPage,
    SecretNames,
    SubscriptionOut,
    TeamIn,
    TeamOut,
    TokenOut,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
FINAL = {"success", "failed", "canceled", "skipped"}
M = TypeVar("M", bound=BaseModel)


class ApiClient:
    """A small synchronous client; turns HTTP errors into readable CLI errors."""

    def __init__(self, server: str, token: str, console: Console) -> None:
        self.http = httpx.Client(
            base_url=server.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
            # An artifact may be served from object storage (a presigned URL); httpx
            # drops the token when a redirect leaves the coordinator's origin.
            follow_redirects=True,
        )
        self.console = console

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.console.print(f"[red]error:[/] cannot reach {self.http.base_url}: {exc}")
            raise typer.Exit(1) from exc
        if response.status_code >= 400:
            self.fail(response)
        return response

    def answer(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        """The answer parsed into its `/api/v1` body (protocol.api): a server that drifts
        from the client's contract fails here, loudly, not three lines later."""
        return model.model_validate(self.call(method, path, **kwargs).json())

    def answers(self, model: type[M], method: str, path: str, **kwargs: Any) -> list[M]:
        """A list answer, each item parsed into its body."""
        return [model.model_validate(item) for item in self.call(method, path, **kwargs).json()]

    def fail(self, response: httpx.Response) -> None:
        """Print the server's error and exit 1."""
        try:
            body = response.json()
            detail = body.get("detail", body)
        except ValueError:
            detail = response.text
        self.console.print(f"[red]error {response.status_code}:[/] {escape(json.dumps(detail))}")
        raise typer.Exit(1)


team = typer.Typer(help="Teams.", no_args_is_help=True)
token = typer.Typer(help="API tokens.", no_args_is_help=True)
project = typer.Typer(help="Projects.", no_args_is_help=True)
runner_token = typer.Typer(help="Runner registration tokens.", no_args_is_help=True)
secret = typer.Typer(help="Project secrets.", no_args_is_help=True)


@secret.command("set")
def secret_set(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    key: Annotated[str, typer.Argument(help="The variable name jobs will see.")],
    server: ServerOpt,
    token: TokenOpt,
    value: Annotated[
        str | None, typer.Option("--value", help="The value (default: read from stdin).")
    ] = None,
) -> None:
    """Set a secret of a project: encrypted at rest, handed to its jobs, masked in logs."""
    body = {"name": key, "value": value if value is not None else sys.stdin.read().rstrip("\n")}
    remote = ApiClient(server, token, err)
    data = remote.answer(SecretNames, "POST", f"/api/v1/projects/{name}/secrets", json=body)
    out.print(f"secrets of {name}: {', '.join(data.names)}")


def show(data: BaseModel | Sequence[BaseModel], as_json: bool, line: str) -> None:
    """A command's answer: as JSON (the body as the server sent it), else `line`."""
    if not as_json:
        out.print(line)
    elif isinstance(data, BaseModel):
        out.print_json(data.model_dump_json())
    else:
        out.print_json(json.dumps([item.model_dump(mode="json") for item in data]))


@team.command("create")
def team_create(name: str, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """Create a team (admin)."""
    body = TeamIn(name=name).model_dump()
    data = ApiClient(server, token, err).answer(TeamOut, "POST", "/api/v1/teams", json=body)
    show(data, as_json, f"team {data.name} created ({data.id})")


@team.command("list")
def team_list(server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """List the teams this token can see."""
    data = ApiClient(server, token, err).answers(TeamOut, "GET", "/api/v1/teams")
    show(data, as_json, "\n".join(t.name for t in data))


@token.command("create")
def token_create(
    team: Annotated[str, typer.Option("--team")],
    name: Annotated[str, typer.Option("--name")],
    role: Annotated[str, typer.Option("--role")],
    server: ServerOpt,
    token: TokenOpt,
    as_json: JsonOpt = False,
) -> None:
    """Create a team token (shown once)."""
    body = {"name": name, "role": role}
    remote = ApiClient(server, token, err)
    data = remote.answer(TokenOut, "POST", f"/api/v1/teams/{team}/tokens", json=body)
    show(data, as_json, data.token)


@runner_token.command("create")
def runner_token_create(
    server: ServerOpt,
    token: TokenOpt,
    team: Annotated[str | None, typer.Option("--team")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a registration token for runners (shared, or for one team)."""
    remote = ApiClient(server, token, err)
    data = remote.answer(TokenOut, "POST", "/api/v1/runner-tokens", json={"team": team})
    show(data, as_json, data.token)


def runners(server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """List the runners: the team's own and the shared ones (the admin sees every one),
    whether each is online, and the jobs it runs now."""
    data = ApiClient(server, token, err).answers(RunnerOut, "GET", "/api/v1/runners")
    if as_json:
        show(data, True, "")
        return
    if not data:
        out.print("no runner has registered (conveyor runner-token create, then conveyor runner)")
        return
    table = Table("name", "team", "labels", "state", "running", "last seen")
    for r in data:
        table.add_row(
            escape(r.name),
            escape(r.team or "shared"),
            escape(", ".join(r.labels)),
            "[green]online[/]" if r.online else "[dim]offline[/]",
            str(r.running),
            r.last_seen_at[:19].replace("T", " "),
        )
    out.print(table)


@project.command("create")
def project_create(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    repo: Annotated[str, typer.Option("--repo", help="Git URL of the repository.")],
    server: ServerOpt,
    token: TokenOpt,
    config_path: Annotated[str, typer.Option("--config-path")] = "conveyor.yml",
    provider: Annotated[
        str, typer.Option("--provider", help="github, gitlab, gitea, bitbucket or git.")
    ] = "git",
    webhook_secret: Annotated[
        str | None, typer.Option("--webhook-secret", help="Default: generated, shown once.")
    ] = None,
    install_hook: Annotated[
        bool,
        typer.Option(
            "--install-hook", help="Install a post-receive hook in the (local) repository."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a project. Prints the webhook URL and secret to give the provider; with
    --install-hook, a local repository's pushes reach Conveyor by themselves."""
    team_name, _, project_name = name.partition("/")
    path = githook.local_path(repo)
    if install_hook and path is None:
        err.print(f"[red]error:[/] --install-hook needs a repository on this machine, not {repo}")
        raise typer.Exit(2)
    if path is not None:
        repo = str(path.resolve())
    body: dict[str, Any] = {
        "team": team_name,
        "name": project_name,
        "repo_url": repo,
        "config_path": config_path,
        "provider": "git" if install_hook else provider,
    }
    if webhook_secret:
        body["webhook_secret"] = webhook_secret
    data = ApiClient(server, token, err).answer(ProjectOut, "POST", "/api/v1/projects", json=body)
    secret = webhook_secret or data.webhook_secret or ""
    hook_url = server.rstrip("/") + data.hook_path
    lines = [f"project {data.team}/{data.name} created ({data.id})"]
    if install_hook and path is not None:
        hook = githook.install(path, hook_url, secret)
        lines.append(f"post-receive hook installed: {hook}")
    else:
        lines.append(f"webhook URL: {hook_url}")
        if data.webhook_secret:
            lines.append(f"webhook secret (shown once): {data.webhook_secret}")
    show(data, as_json, "\n".join(lines))


@project.command("set")
def project_set(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    server: ServerOpt,
    token: TokenOpt,
    retention_days: Annotated[
        int | None, typer.Option("--retention-days", help="Days artifacts are kept.")
    ] = None,
    production: Annotated[
        list[str] | None,
        typer.Option(
            "--production",
            help="An environment whose deploys DORA counts (repeat; default: production, prod).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a project's artifact retention or its production environments."""
    body: dict[str, Any] = {}
    if retention_days is not None:
        body["artifact_retention_days"] = retention_days
    if production:
        body["production"] = production
    remote = ApiClient(server, token, err)
    data = remote.answer(ProjectOut, "PATCH", f"/api/v1/projects/{name}", json=body)
    show(
        data,
        as_json,
        f"{name}: artifacts kept {data.artifact_retention_days} days; "
        f"production: {', '.join(data.production)}",
    )


@project.command("subscribe")
def project_subscribe(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    url: Annotated[str, typer.Option("--url", help="Where the events are posted.")],
    server: ServerOpt,
    token: TokenOpt,
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--event", help="A type (deployment.succeeded), a prefix (deployment.*); repeat."
        ),
    ] = None,
    form: Annotated[str, typer.Option("--format", help="standard or slack.")] = "standard",
    as_json: JsonOpt = False,
) -> None:
    """Post the project's lifecycle events to a URL, signed (Standard Webhooks)."""
    body: dict[str, Any] = {"url": url, "format": form, "events": events or ["*"]}
    remote = ApiClient(server, token, err)
    path = f"/api/v1/projects/{name}/subscriptions"
    data = remote.answer(SubscriptionOut, "POST", path, json=body)
    show(
        data,
        as_json,
        f"subscription {data.id}: {', '.join(data.events)} → {data.url}\n"
        f"signing secret (shown once): {data.secret}",
    )


@project.command("subscriptions")
def project_subscriptions(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    server: ServerOpt,
    token: TokenOpt,
    as_json: JsonOpt = False,
) -> None:
    """The project's webhook subscriptions and how their deliveries stand."""
    remote = ApiClient(server, token, err)
    data = remote.answers(SubscriptionOut, "GET", f"/api/v1/projects/{name}/subscriptions")
    lines = [
        f"{s.id} {s.format} {','.join(s.events)} → {s.url}: {s.sent} sent, "
        f"{s.pending} pending, {s.failed} given up"
        + (f" (last error: {s.last_error})" if s.last_error else "")
        for s in data
    ]
    show(data, as_json, "\n".join(lines) or "no subscriptions")


@project.command("unsubscribe")
def project_unsubscribe(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    subscription: Annotated[str, typer.Argument(help="The subscription's id.")],
    server: ServerOpt,
    token: TokenOpt,
) -> None:
    """Stop posting events to a subscription's URL."""
    ApiClient(server, token, err).call(
        "DELETE", f"/api/v1/projects/{name}/subscriptions/{subscription}"
    )
    out.print(f"subscription {subscription} deleted")


@project.command("events")
def project_events(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    server: ServerOpt,
    token: TokenOpt,
    limit: Annotated[int, typer.Option("--limit")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The project's latest lifecycle events, newest first."""
    remote = ApiClient(server, token, err)
    path = f"/api/v1/projects/{name}/events"
    data = remote.answers(EventOut, "GET", path, params={"limit": limit})
    show(data, as_json, "\n".join(f"{e.created_at} {e.type} {e.subject}" for e in data))


@project.command("rotate-secret")
def project_rotate_secret(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    server: ServerOpt,
    token: TokenOpt,
    grace: Annotated[
        int, typer.Option("--grace", help="Seconds the old secret keeps verifying.")
    ] = 86_400,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", help="A local repository whose hook should use the new secret."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace a project's webhook secret; the old one verifies for --grace seconds."""
    remote = ApiClient(server, token, err)
    data = remote.answer(
        RotateOut,
        "POST",
        f"/api/v1/projects/{name}/webhook-secret",
        json={"grace_seconds": grace},
    )
    lines = [
        f"new webhook secret (shown once): {data.webhook_secret}",
        f"the previous secret verifies until {data.previous_valid_until}",
    ]
    if repo is not None:
        info = remote.answer(ProjectOut, "GET", f"/api/v1/projects/{name}")
        hook = githook.install(repo, server.rstrip("/") + info.hook_path, data.webhook_secret)
        lines.append(f"hook updated: {hook}")
    show(data, as_json, "\n".join(lines))


@project.command("deliveries")
def project_deliveries(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    server: ServerOpt,
    token: TokenOpt,
    limit: Annotated[int, typer.Option("--limit")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The latest webhook deliveries and what each started."""
    remote = ApiClient(server, token, err)
    path = f"/api/v1/projects/{name}/deliveries"
    data = remote.answers(DeliveryOut, "GET", path, params={"limit": limit})
    lines = [
        f"{d.received_at[:19]}  {d.provider:<9} {d.event:<28} {d.state:<8} "
        + escape("; ".join(d.outcome))
        for d in data
    ]
    show(data, as_json, "\n".join(lines) or "no deliveries")


def git_hook() -> None:
    """Run by a repository's post-receive hook: posts each updated ref to Conveyor."""
    gdir = Path(os.environ.get("GIT_DIR", ".")).resolve()
    for line in githook.run_hook(gdir, sys.stdin.read().splitlines()):
        print(line, flush=True)


@project.command("list")
def project_list(server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """List projects."""
    data = ApiClient(server, token, err).answers(ProjectOut, "GET", "/api/v1/projects")
    show(data, as_json, "\n".join(f"{p.team}/{p.name}  {p.repo_url}" for p in data))


def trigger(
    name: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    server: ServerOpt,
    token: TokenOpt,
    ref: Annotated[str, typer.Option("--ref")] = "main",
    sha: Annotated[str | None, typer.Option("--sha")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run to its end.")] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Repeat a trigger safely: the same key returns the first run (24 h).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a run of a project; with --wait, follow its logs and exit 0 only on success."""
    remote = ApiClient(server, token, err)
    body = {"ref": ref, **({"sha": sha} if sha else {})}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    path = f"/api/v1/projects/{name}/runs"
    run = remote.answer(RunOut, "POST", path, json=body, headers=headers)
    show(run, as_json, f"run {run.id} {run.status} ({run.sha[:12]})")
    if wait:
        final = follow_run(remote, str(run.id), quiet=as_json)
        raise typer.Exit(0 if final == "success" else 1)


def watch(
    run_id: Annotated[str, typer.Argument(help="The run (see `conveyor runs`).")],
    server: ServerOpt,
    token: TokenOpt,
) -> None:
    """Follow a run, however it started (push, schedule, trigger), to its end: live logs;
    exit 0 only on success."""
    final = follow_run(ApiClient(server, token, err), run_id)
    raise typer.Exit(0 if final == "success" else 1)


def runs(
    server: ServerOpt,
    token: TokenOpt,
    name: Annotated[str | None, typer.Argument(help="TEAM/PROJECT")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    path = f"/api/v1/projects/{name}/runs" if name else "/api/v1/runs"
    params = {"status": status} if status else {}
    page = ApiClient(server, token, err).answer(RunPage, "GET", path, params=params)
    if as_json:
        show(page, True, "")
        return
    table = Table("run", "project", "status", "ref", "sha", "created")
    for r in page.items:
        table.add_row(
            str(r.id),
            f"{r.team}/{r.project}",
            r.status,
            r.ref,
            r.sha[:12],
            r.created_at,
        )
    out.print(table)


def logs(
    job_id: str,
    server: ServerOpt,
    token: TokenOpt,
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
) -> None:
    """Print a job's log; -f follows it until the job ends."""
    remote = ApiClient(server, token, err)
    offset = 0
    while True:
        response = remote.call("GET", f"/api/v1/jobs/{job_id}/log", params={"offset": offset})
        sys.stdout.write(response.content.decode(errors="replace"))
        sys.stdout.flush()
        offset = int(response.headers["X-Next-Offset"])
        if not follow or response.headers["X-Job-Status"] in FINAL:
            if follow and response.content:
                continue
            return
        time.sleep(0.3)


def cancel(run_id: str, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """Cancel a run."""
    data = ApiClient(server, token, err).answer(RunOut, "POST", f"/api/v1/runs/{run_id}/cancel")
    show(data, as_json, f"run {data.id} {data.status}")


def retry(run_id: str, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """Run a run's commit again, as a new run."""
    data = ApiClient(server, token, err).answer(RunOut, "POST", f"/api/v1/runs/{run_id}/retry")
    show(data, as_json, f"run {data.id} {data.status} ({data.sha[:12]})")


def play(job_id: str, server: ServerOpt, token: TokenOpt, as_json: JsonOpt = False) -> None:
    """Start a manual job."""
    data = ApiClient(server, token, err).answer(RunOut, "POST", f"/api/v1/jobs/{job_id}/play")
    show(data, as_json, f"run {data.id} {data.status}")


def register(app: typer.Typer) -> None:
    """Add the client commands to the `conveyor` app."""
    app.add_typer(team, name="team")
    app.add_typer(token, name="token")
    app.add_typer(project, name="project")
    app.add_typer(runner_token, name="runner-token")
    app.add_typer(secret, name="secret")
    app.command("git-hook", hidden=True)(git_hook)
    for command in (trigger, watch, runs, logs, cancel, retry, play, runners):
        app.command()(command)


def follow_run(remote: ApiClient, run_id: str, quiet: bool = False) -> str:
    """Print each job's log as it grows, prefixed with the job's name, until the run ends."""
    offsets: dict[str, int] = {}
    while True:
        run = remote.answer(RunOut, "GET", f"/api/v1/runs/{run_id}")
        for job in run.jobs:
            offset = offsets.get(str(job.id), 0)
            if job.status in ("created", "pending", "manual") and offset == 0:
                continue
            response = remote.call("GET", f"/api/v1/jobs/{job.id}/log", params={"offset": offset})
            offsets[str(job.id)] = int(response.headers["X-Next-Offset"])
            if not quiet:
                for line in response.content.decode(errors="replace").splitlines():
                    out.print(
                        f"[cyan]{escape(job.name[:20]):<20}[/] │ {escape(line)}",
                        soft_wrap=True,
                    )
        if run.status in FINAL:
            if not quiet:
                for job in run.jobs:
                    out.print(f"{job.name}: {job.status} {escape(job.reason)}")
                out.print(f"run {run.id} {run.status}")
            return run.status
        time.sleep(0.3)
