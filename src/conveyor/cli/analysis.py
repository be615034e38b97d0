"""`conveyor analysis TEAM/PROJECT --env E`: how the environment's deployment is being
judged, over HTTP. A table per analysis run (its phase and reason, then each metric's
latest verdict with the values per slot, the threshold, the samples and the test
statistic); `-f` prints each new evaluation until the deployment ends."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.analysis.judge import seen_text, shown
from conveyor.cli.client import ApiClient, JsonOpt, show
from conveyor.cli.console import err, out
from conveyor.cli.deploys import FINAL, EnvOpt, ProjectArg, env_path
from conveyor.cli.options import ServerOpt, TokenOpt
from conveyor.protocol.api import AnalysisOut, DeploymentOut, EnvironmentOut

COLOURS = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def analysis(
    project: ProjectArg,
    env: EnvOpt,
    server: ServerOpt,
    token: TokenOpt,
    revision: Annotated[
        int | None, typer.Option("--revision", "-r", help="Default: the current deployment.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print each evaluation until it ends.")
    ] = False,
    evaluations: Annotated[int, typer.Option(help="Evaluations per run (--json).")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The analyses of an environment's deployment: verdicts, values and reasons."""
    remote = ApiClient(server, token, err)
    number = revision if revision is not None else _current(remote, project, env)
    path = f"{env_path(project, env)}/deployments/{number}"
    row = remote.answer(DeploymentOut, "GET", path)
    path = f"/api/v1/deployments/{row.id}/analysis"
    if follow:
        _follow(remote, path)
        return
    data = remote.answer(AnalysisOut, "GET", path, params={"evaluations": evaluations})
    if as_json:
        show(data, True, "")
        return
    render(data)


def _current(remote: ApiClient, project: str, env: str) -> int:
    status = remote.answer(EnvironmentOut, "GET", env_path(project, env))
    if status.deployment is None:
        err.print(f"[red]error:[/] {env} has no deployment yet")
        raise typer.Exit(1)
    return status.deployment.number


def render(data: AnalysisOut) -> None:
    dep = data.deployment
    out.print(
        f"[bold]{escape(dep.environment)} revision {dep.number}[/] {dep.phase}"
        + (f": {escape(dep.message)}" if dep.message else "")
    )
    if not data.runs:
        out.print("  no analysis has run for this deployment")
    for run in data.runs:
        length = "" if run.duration_s is None else f" for {run.duration_s:g}s"
        out.print(
            f"\n[bold]{run.key}[/] {escape(run.template)}{length}: "
            f"{_phase(run.phase)} after {run.evaluations} evaluations"
            + (f" — {escape(run.reason)}" if run.reason else "")
            + (f" (by {escape(run.ended_by)})" if run.ended_by else "")
        )
        table = Table("metric", "verdict", "canary", "stable", "threshold", "samples", "ln BF")
        for j in run.latest:
            samples = j.samples
            table.add_row(
                escape(j.metric),
                _verdict(j.verdict),
                shown(j.canary, j.unit),
                shown(j.stable, j.unit),
                shown(j.threshold, j.unit),
                " / ".join(f"{samples[k]}" for k in ("canary", "stable") if k in samples),
                shown(j.log_bayes_factor),
            )
        out.print(table)
        for j in run.latest:
            out.print(f"  {escape(j.metric)}: {escape(j.reason)}{seen_text(j.hosts, j.routers)}")


def _follow(remote: ApiClient, path: str) -> None:
    """One line per new evaluation of any run, until the deployment and its runs end."""
    seen: dict[str, int] = {}
    while True:
        data = remote.answer(AnalysisOut, "GET", path, params={"evaluations": 5})
        for run in data.runs:
            for evaluation in run.history:
                if evaluation.seq <= seen.get(run.key, 0):
                    continue
                seen[run.key] = evaluation.seq
                parts = [
                    f"{escape(j.metric)} {_verdict(j.verdict)} {shown(j.canary, j.unit)}"
                    + (f"/{shown(j.stable, j.unit)}" if j.stable is not None else "")
                    for j in evaluation.judgements
                ]
                out.print(
                    f"{evaluation.elapsed_s:7.1f}s {run.key:<10} "
                    f"{_verdict(evaluation.verdict)}  " + "  ".join(parts)
                )
        dep = data.deployment
        if dep.phase in FINAL and all(r.phase != "running" for r in data.runs):
            out.print(f"{dep.phase}" + (f": {escape(dep.message)}" if dep.message else ""))
            return
        time.sleep(1.0)


def _phase(phase: str) -> str:
    colour = {"passed": "green", "failed": "red", "inconclusive": "yellow"}.get(phase)
    return f"[{colour}]{phase}[/]" if colour else phase


def _verdict(verdict: str) -> str:
    colour = COLOURS.get(verdict)
    return f"[{colour}]{verdict}[/]" if colour else verdict


def register(app: typer.Typer) -> None:
    app.command()(analysis)
