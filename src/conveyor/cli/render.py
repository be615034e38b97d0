"""How the CLI shows errors, plans, live logs and run summaries (Rich)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from conveyor.domain.status import JobStatus
from conveyor.pipeline.durations import format_duration
from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.plan import Plan
from conveyor.runner.local import RunResult

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta")
_STATUS_STYLE = {
    JobStatus.SUCCESS: ("✔", "green"),
    JobStatus.FAILED: ("✖", "red"),
    JobStatus.CANCELED: ("⊘", "yellow"),
    JobStatus.SKIPPED: ("↷", "dim"),
    JobStatus.MANUAL: ("▶", "blue"),
    JobStatus.RUNNING: ("●", "cyan"),
    JobStatus.PENDING: ("…", "dim"),
}


def render_errors(console: Console, exc: PipelineInvalid) -> None:
    for error in exc.errors:
        console.print(escape(str(error)), style="red", soft_wrap=True)
    count = len(exc.errors)
    console.print(f"{count} error{'s' if count != 1 else ''}", style="bold red")


def render_plan(console: Console, plan: Plan) -> None:
    event = plan.event
    console.print(
        f"[bold]{escape(plan.service)}[/] (team {escape(plan.team)}): "
        f"{event.effective_kind.value} {escape(event.ref)}"
    )
    verdict = "[green]runs[/]" if plan.triggered else "[yellow]does not run[/]"
    console.print(f"pipeline {verdict}: {escape('; '.join(plan.trigger.reasons))}")
    if plan.trigger.included and not plan.jobs:
        console.print("[yellow]no job matched this event[/]")
    if not plan.trigger.included:
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("", "job", "stage", "needs", "why"):
        table.add_column(column)
    for job in plan.jobs:
        needs = ", ".join(job.needs) if len(job.needs) <= 3 else f"{len(job.needs)} jobs"
        when = f"when: {job.when.value}; " if job.when.value != "on_success" else ""
        if job.required_by is not None:
            when = f"required for merge by team {job.required_by}; " + when
        table.add_row(
            "[green]✔[/]",
            escape(job.name),
            job.stage,
            escape(needs) or "-",
            escape(when + "; ".join(job.reasons)),
        )
    for excluded in plan.excluded:
        table.add_row(
            "[dim]✖[/]",
            f"[dim]{escape(excluded.name)}[/]",
            "",
            "",
            f"[dim]excluded: {escape('; '.join(excluded.reasons))}[/]",
        )
    console.print(table)
    if plan.required_teams:
        console.print(f"before a merge: {escape(required_summary(plan))}")


def required_summary(plan: Plan) -> str:
    """Each required team with the jobs of this run that report its check
    (`conveyor/<team>/required`), or that none does (its check will fail)."""
    parts = []
    for team in plan.required_teams:
        jobs = [j.name for j in plan.jobs if j.required_by == team]
        found = ", ".join(jobs) if jobs else "no job in this run: its check fails"
        parts.append(f"conveyor/{team}/required ({found})")
    return "; ".join(parts)


class LiveObserver:
    """Prints job output as it arrives, each line prefixed with its job's name."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._colours: dict[str, str] = {}
        self._width = 12

    def _prefix(self, job: str) -> Text:
        colour = self._colours.setdefault(job, _COLOURS[len(self._colours) % len(_COLOURS)])
        self._width = max(self._width, min(len(job), 28))
        return Text(f"{job[:28]:<{self._width}} │ ", style=colour)

    def job_log(self, job: str, line: str) -> None:
        if not self.quiet:
            self.console.print(self._prefix(job) + Text(line), soft_wrap=True)

    def job_status(self, job: str, status: JobStatus, detail: str) -> None:
        if status in (JobStatus.PENDING, JobStatus.CREATED):
            return
        icon, style = _STATUS_STYLE.get(status, ("•", ""))
        text = self._prefix(job) + Text(f"{icon} {status.value}", style=f"bold {style}")
        if detail:
            text += Text(f" ({detail})", style="dim")
        self.console.print(text, soft_wrap=True)


def _reports_cell(result: RunResult, index: int) -> str:
    record = result.jobs[index]
    last = record.last
    if last is None:
        return ""
    parts = []
    if last.junit is not None:
        parts.append(f"tests {last.junit.passed}/{last.junit.total}")
    if last.coverage is not None:
        parts.append(f"cov {last.coverage:g}%")
    if last.gates:
        failed = [g.gate for g in last.gates if not g.passed]
        parts.append(f"gates: {', '.join(failed)} FAILED" if failed else "gates ok")
    return ", ".join(parts)


def render_summary(console: Console, result: RunResult, run_dir: Path) -> None:
    if not result.plan.triggered:
        console.print(f"run {result.status.value}: nothing to run")
        return
    table = Table(title=f"run {result.run_id}", title_justify="left", header_style="bold")
    for column in ("job", "stage", "status", "tries", "exit", "time", "reports", "detail"):
        table.add_column(column, overflow="fold")
    for index, record in enumerate(result.jobs):
        icon, style = _STATUS_STYLE.get(record.status, ("•", ""))
        last = record.last
        table.add_row(
            escape(record.job.name),
            record.job.stage,
            f"[{style}]{icon} {record.status.value}[/]" if style else record.status.value,
            str(len(record.attempts)),
            "" if last is None or last.exit_code is None else str(last.exit_code),
            format_duration(record.duration_s) if record.attempts else "",
            escape(_reports_cell(result, index)),
            escape(record.reason),
        )
    console.print(table)
    status = result.status.value
    colour = {"success": "green", "failed": "red", "canceled": "yellow"}.get(status, "white")
    console.print(
        f"[bold {colour}]run {status}[/] in {format_duration(result.duration_s)}; "
        f"logs and artifacts in {escape(str(run_dir))}"
    )
