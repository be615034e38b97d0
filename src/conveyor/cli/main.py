"""The `conveyor` command."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from conveyor import __version__
from conveyor.cli import (
    analysis,
    artifacts,
    audit,
    client,
    deploys,
    dora,
    hosts,
    loadgen,
    policy,
    processes,
)
from conveyor.cli.console import (
    EXIT_CANCELED,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SKIPPED,
    err,
    out,
)
from conveyor.cli.render import LiveObserver, render_errors, render_plan, render_summary
from conveyor.config import Settings
from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import LoadedPipeline, load_pipeline
from conveyor.pipeline.plan import Plan, compile_plan
from conveyor.pipeline.schema import PipelineSpec
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.runner.attempt import RunOptions
from conveyor.runner.local import LocalRun, RunResult

app = typer.Typer(
    name="conveyor",
    help="Conveyor: pipelines as code, runners, artifacts and zero-downtime deploys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

FileArg = Annotated[Path, typer.Argument(help="The pipeline file.")]
EventOpt = Annotated[EventKind, typer.Option("--event", help="The event to simulate.")]
RefOpt = Annotated[
    str | None,
    typer.Option("--ref", help="Git ref, e.g. refs/heads/main or refs/tags/v1 (default: HEAD)."),
]
ChangedOpt = Annotated[
    list[str] | None,
    typer.Option("--changed", help="A changed file, relative to the repository root; repeat."),
]
MessageOpt = Annotated[str, typer.Option("--message", help="The commit message.")]
TargetOpt = Annotated[str | None, typer.Option("--target", help="Target branch of a pull request.")]
ShaOpt = Annotated[str | None, typer.Option("--sha", help="Commit sha (default: git HEAD).")]


@app.callback()
def _root() -> None:
    """Conveyor: pipelines as code, runners, artifacts and zero-downtime deploys."""


@app.command()
def version() -> None:
    """Print Conveyor's version."""
    out.print(__version__)


@app.command()
def validate(
    files: Annotated[list[Path] | None, typer.Argument(help="Pipeline files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Errors as JSON.")] = False,
) -> None:
    """Check pipeline files; print every error as FILE:LINE:COL: message."""
    problems: list[str] = []
    report: list[dict[str, object]] = []
    for file in files or [Path("conveyor.yml")]:
        try:
            load_pipeline(file)
            report.append({"file": str(file), "valid": True, "errors": []})
            if not as_json:
                out.print(f"[green]✔[/] {file} is valid")
        except PipelineInvalid as exc:
            problems += [str(e) for e in exc.errors]
            report.append({"file": str(file), "valid": False, "errors": _error_dicts(exc)})
            if not as_json:
                render_errors(err, exc)
    if as_json:
        out.print_json(json.dumps(report))
    raise typer.Exit(EXIT_FAILED if problems else EXIT_OK)


def _error_dicts(exc: PipelineInvalid) -> list[dict[str, object]]:
    return [
        {"file": e.file, "line": e.position.line, "column": e.position.column, "message": e.message}
        for e in exc.errors
    ]


@app.command()
def schema() -> None:
    """Print the JSON Schema of conveyor.yml, for editors."""
    document = PipelineSpec.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "conveyor.yml"
    out.print_json(json.dumps(document))


@app.command()
def explain(
    file: FileArg = Path("conveyor.yml"),
    event: EventOpt = EventKind.PUSH,
    ref: RefOpt = None,
    changed: ChangedOpt = None,
    message: MessageOpt = "",
    target: TargetOpt = None,
    sha: ShaOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The plan as JSON.")] = False,
) -> None:
    """Show which jobs would run for an event, and the rule behind every decision."""
    loaded = _load(file)
    plan = compile_plan(loaded.spec, _event(file, event, ref, changed, message, target, sha))
    if as_json:
        out.print_json(json.dumps(_plan_dict(plan)))
    else:
        render_plan(out, plan)


@app.command()
def run(
    file: FileArg = Path("conveyor.yml"),
    event: EventOpt = EventKind.PUSH,
    ref: RefOpt = None,
    changed: ChangedOpt = None,
    message: MessageOpt = "",
    target: TargetOpt = None,
    sha: ShaOpt = None,
    job: Annotated[
        list[str] | None,
        typer.Option("--job", help="Run only this job (and what it needs); repeat."),
    ] = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=64)] = 1,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a JSON summary here.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Logs, artifacts, caches [env CONVEYOR_DATA_DIR]."),
    ] = None,
    keep_workspaces: Annotated[bool, typer.Option("--keep-workspaces")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No live logs.")] = False,
) -> None:
    """Run a pipeline on this machine, exactly as a runner would, with no server."""
    loaded = _load(file)
    plan = compile_plan(loaded.spec, _event(file, event, ref, changed, message, target, sha))
    settings = Settings()
    options = RunOptions(
        source_dir=file.resolve().parent,
        data_dir=(data_dir or settings.data_dir).resolve(),
        parallel=parallel,
        secrets=settings.secret_values(),
        selected=tuple(job or ()),
    )
    try:
        local = LocalRun(plan, options, LiveObserver(out, quiet=quiet))
    except KeyError as exc:
        err.print(f"[red]error:[/] --job {exc.args[0]!r} is not a job of this run")
        raise typer.Exit(EXIT_INVALID) from exc
    if not plan.triggered:
        render_plan(out, plan)
    result = asyncio.run(_execute(local))
    render_summary(out, result, local.run_dir)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.as_report(), indent=2) + "\n")
    raise typer.Exit(_exit_code(result))


async def _execute(local: LocalRun) -> RunResult:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, local.cancel)
    try:
        return await local.execute()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _exit_code(result: RunResult) -> int:
    return {
        "success": EXIT_OK,
        "skipped": EXIT_SKIPPED,
        "canceled": EXIT_CANCELED,
    }.get(result.status.value, EXIT_FAILED)


def _load(file: Path) -> LoadedPipeline:
    try:
        return load_pipeline(file)
    except PipelineInvalid as exc:
        render_errors(err, exc)
        raise typer.Exit(EXIT_INVALID) from exc


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def _event(
    file: Path,
    kind: EventKind,
    ref: str | None,
    changed: list[str] | None,
    message: str,
    target: str | None,
    sha: str | None,
) -> Event:
    where = file.resolve().parent
    if ref is None:
        branch = _git(where, "symbolic-ref", "--short", "-q", "HEAD")
        ref = f"refs/heads/{branch or 'main'}"
    elif not ref.startswith("refs/"):
        ref = f"refs/tags/{ref}" if kind is EventKind.TAG else f"refs/heads/{ref}"
    return Event(
        kind=kind,
        ref=ref,
        sha=sha or _git(where, "rev-parse", "HEAD") or "0" * 40,
        changed=tuple(changed) if changed else None,
        message=message,
        target_branch=target,
    )


def _plan_dict(plan: Plan) -> dict[str, object]:
    return {
        "service": plan.service,
        "team": plan.team,
        "event": plan.event.effective_kind.value,
        "ref": plan.event.ref,
        "triggered": plan.triggered,
        "reasons": list(plan.trigger.reasons),
        "jobs": [
            {
                "name": j.name,
                "stage": j.stage,
                "needs": list(j.needs),
                "when": j.when.value,
                "reasons": list(j.reasons),
                "required_by": j.required_by,
            }
            for j in plan.jobs
        ],
        "excluded": [{"name": j.name, "reasons": list(j.reasons)} for j in plan.excluded],
        "required_teams": {
            team: [j.name for j in plan.jobs if j.required_by == team]
            for team in plan.required_teams
        },
    }


client.register(app)
processes.register(app)
app.add_typer(artifacts.app, name="artifacts")
app.command("load")(loadgen.load)
deploys.register(app)
analysis.register(app)
dora.register(app)
audit.register(app)
policy.register(app)
hosts.register(app)


def main() -> None:
    app()
