"""One attempt of one job: workspace, artifacts in, cache in, script, after_script, reports,
gates, artifacts out, cache out. Each step that can fail says which failure class it is."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from conveyor.domain.failure import FailureClass
from conveyor.domain.status import JobStatus
from conveyor.ids import new_id
from conveyor.pipeline.plan import Plan, PlannedJob
from conveyor.pipeline.triggers import Event
from conveyor.runner.gates import GateVerdict, judge
from conveyor.runner.masking import SecretMasker
from conveyor.runner.reports import JUnitSummary, ReportError, parse_cobertura, parse_junit
from conveyor.runner.shell import ExecOutcome, ExecResult, ShellExecutor
from conveyor.runner.workspace import (
    JobArtifacts,
    JobCache,
    LocalArtifacts,
    LocalCache,
    StoredFile,
    cache_key,
    match_files,
    populate,
    slug,
    source_files,
)

AFTER_SCRIPT_TIMEOUT_S = 300.0
BASE_ENV_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TERM")
"""What a job inherits from the environment Conveyor runs in; everything else is clean."""


class HandedBack(Exception):
    """The coordinator took the job back (its deployment waits for approvals): the
    attempt ends without an outcome to report."""


class RunObserver(Protocol):
    """Receives what a run does, as it happens. Called from the event loop's thread."""

    def job_log(self, job: str, line: str) -> None:
        """One line of a job's output, secrets already masked."""

    def job_status(self, job: str, status: JobStatus, detail: str) -> None:
        """A job moved to `status`; `detail` says why."""


@dataclass(frozen=True)
class RunOptions:
    """How `conveyor run` runs a plan. `selected` are `--job` names; `base_env` replaces
    the process environment as the source of BASE_ENV_NAMES (tests use it)."""

    source_dir: Path
    data_dir: Path
    parallel: int = 1
    secrets: Mapping[str, str] = field(default_factory=dict)
    selected: tuple[str, ...] = ()
    base_env: Mapping[str, str] | None = None
    keep_workspaces: bool = False
    kill_grace_s: float = 5.0


def base_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The few variables a job inherits from Conveyor's own environment."""
    env = os.environ if source is None else source
    return {name: env[name] for name in BASE_ENV_NAMES if name in env}


@dataclass
class AttemptResult:
    number: int
    status: JobStatus
    exit_code: int | None
    failure_class: FailureClass | None
    duration_s: float
    detail: str
    junit: JUnitSummary | None = None
    coverage: float | None = None
    gates: list[GateVerdict] = field(default_factory=list)
    artifacts: list[StoredFile] = field(default_factory=list)
    cache: str | None = None
    report_problems: dict[str, str] = field(default_factory=dict)
    script_started_at: float | None = None
    """Unix time (s) just before the script's shell was spawned: the job's real start."""

    def reports_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.script_started_at is not None:
            out["script_started_at"] = round(self.script_started_at, 4)
        if self.junit is not None:
            out["junit"] = self.junit.as_dict()
        if self.coverage is not None:
            out["coverage_percent"] = self.coverage
        if self.report_problems:
            out["problems"] = dict(self.report_problems)
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "attempt": self.number,
            "status": self.status.value,
            "exit_code": self.exit_code,
            "failure_class": self.failure_class.value if self.failure_class else None,
            "duration_s": round(self.duration_s, 3),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RunInfo:
    """What a job needs to know about its run."""

    run_id: str
    service: str
    team: str
    event: Event

    @classmethod
    def of_plan(cls, plan: Plan, run_id: str) -> RunInfo:
        return cls(run_id=run_id, service=plan.service, team=plan.team, event=plan.event)


class JobDeployer(Protocol):
    """Carries out a job's `deploy:` through the coordinator's deployment manager."""

    async def deploy(self, job: PlannedJob, note: Callable[[str], None]) -> tuple[bool, str]:
        """Deploy the artifact the job's needs published, follow the deployment to its end,
        noting each change; returns whether it succeeded, and why not."""
        ...


@dataclass(frozen=True)
class AttemptContext:
    """What every attempt of a run shares."""

    run: RunInfo
    run_dir: Path
    source_dir: Path
    files: tuple[str, ...]
    base_env: dict[str, str]
    secrets: dict[str, str]
    cache: JobCache
    keep_workspaces: bool
    artifacts: JobArtifacts
    deployer: JobDeployer | None = None
    """None in a local run (`conveyor run`): deploys need a coordinator."""

    @classmethod
    def create(cls, run: RunInfo, options: RunOptions, run_dir: Path) -> AttemptContext:
        source = options.source_dir.resolve()
        files = source_files(source, exclude=[options.data_dir])
        return cls(
            run=run,
            run_dir=run_dir,
            source_dir=source,
            files=tuple(files),
            base_env=base_environment(options.base_env),
            secrets=dict(options.secrets),
            cache=LocalCache(options.data_dir / "cache" / run.team),
            keep_workspaces=options.keep_workspaces,
            artifacts=LocalArtifacts(run_dir / "artifacts"),
        )

    def log_path(self, job_name: str) -> Path:
        return self.run_dir / "logs" / f"{slug(job_name)}.log"

    def environment(self, job: PlannedJob, attempt: int, workspace: Path) -> dict[str, str]:
        event = self.run.event
        conveyor = {
            "CI": "true",
            "CONVEYOR": "true",
            "CONVEYOR_RUN_ID": self.run.run_id,
            "CONVEYOR_JOB_ID": str(new_id()),
            "CONVEYOR_JOB_NAME": job.name,
            "CONVEYOR_JOB_STAGE": job.stage,
            "CONVEYOR_ATTEMPT": str(attempt),
            "CONVEYOR_SERVICE": self.run.service,
            "CONVEYOR_TEAM": self.run.team,
            "CONVEYOR_EVENT": event.effective_kind.value,
            "CONVEYOR_REF": event.ref,
            "CONVEYOR_BRANCH": event.branch or "",
            "CONVEYOR_TAG": event.tag or "",
            "CONVEYOR_SHA": event.sha,
            "CONVEYOR_WORKSPACE": str(workspace),
            "TMPDIR": str(workspace.parent / "tmp"),
        }
        conveyor |= {f"CONVEYOR_MATRIX_{k}": v for k, v in job.matrix.items()}
        return {**self.base_env, **job.env, **self.secrets, **conveyor}


class LogSink:
    """Masks a job's output, writes it to the job's log file and hands complete lines to
    the observer."""

    def __init__(self, job: str, masker: SecretMasker, log: BinaryIO, observer: RunObserver):
        self.job = job
        self.masker = masker
        self.log = log
        self.observer = observer
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        self._emit(self.masker.feed(chunk))

    def note(self, text: str) -> None:
        """A line from Conveyor itself (not the script)."""
        self.flush()
        self._emit(self.masker.mask(f"[conveyor] {text}\n".encode()))

    def flush(self) -> None:
        self._emit(self.masker.flush())
        if self._partial:
            self._emit(b"\n")

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self.log.write(data)
        self.log.flush()
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self.observer.job_log(self.job, line.decode("utf-8", "replace").rstrip("\r"))


async def run_attempt(
    ctx: AttemptContext,
    job: PlannedJob,
    number: int,
    executor: ShellExecutor,
    cancel: asyncio.Event,
    observer: RunObserver,
) -> AttemptResult:
    """Run attempt `number` of `job` in a fresh workspace. Never raises for job failures."""
    root = ctx.run_dir / "work" / slug(job.name) / f"attempt-{number}"
    workspace = root / "workspace"
    log_path = ctx.log_path(job.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        sink = LogSink(job.name, SecretMasker(ctx.secrets.values()), log, observer)
        sink.note(f"attempt {number} of {job.retry.max + 1} for {job.name!r}")
        try:
            result = await _attempt(ctx, job, number, executor, cancel, sink, root, workspace)
        finally:
            sink.flush()
            if not ctx.keep_workspaces:
                shutil.rmtree(root, ignore_errors=True)
    return result


async def _attempt(
    ctx: AttemptContext,
    job: PlannedJob,
    number: int,
    executor: ShellExecutor,
    cancel: asyncio.Event,
    sink: LogSink,
    root: Path,
    workspace: Path,
) -> AttemptResult:
    try:
        key = await _prepare(ctx, job, root, workspace, sink)
    except OSError as exc:
        sink.note(f"could not set up the workspace: {exc}")
        return AttemptResult(number, JobStatus.FAILED, None, FailureClass.INFRA, 0.0, str(exc))
    env = ctx.environment(job, number, workspace)
    started = time.time()
    executed = await executor.run(
        job.script,
        cwd=workspace,
        env=env,
        timeout_s=job.timeout_s,
        output=sink.feed,
        cancel=cancel,
        script_path=root / "script.sh",
    )
    sink.flush()
    if executed.outcome is not ExecOutcome.CANCELED and job.after_script:
        await _after_script(job, executor, workspace, env, root, sink)
    result = _result(number, executed)
    result.script_started_at = started
    result.cache = key.partition(":")[0] if key else None
    _collect_reports(job, workspace, result, sink)
    if result.status is JobStatus.SUCCESS:
        await _finish_success(ctx, job, workspace, result, key, sink)
    if result.status is JobStatus.SUCCESS and job.deploy is not None:
        await _deploy(ctx, job, result, sink)
    return result


async def _deploy(
    ctx: AttemptContext, job: PlannedJob, result: AttemptResult, sink: LogSink
) -> None:
    assert job.deploy is not None
    if ctx.deployer is None:
        sink.note(
            f"deploy to {job.deploy.environment!r} skipped: deployments are carried out by a "
            "coordinator (`conveyor serve`), not by a local run"
        )
        return
    try:
        succeeded, detail = await ctx.deployer.deploy(job, sink.note)
    except HandedBack as exc:
        result.status, result.detail = JobStatus.BLOCKED, str(exc)
        return
    if not succeeded:
        result.status = JobStatus.FAILED
        result.failure_class = FailureClass.DEPLOY
        result.detail = f"deploy to {job.deploy.environment}: {detail}"


async def _prepare(
    ctx: AttemptContext, job: PlannedJob, root: Path, workspace: Path, sink: LogSink
) -> str | None:
    if root.exists():
        shutil.rmtree(root)
    if job.checkout:
        populate(workspace, ctx.source_dir, ctx.files)
    else:
        workspace.mkdir(parents=True)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    for needed in job.artifacts_from:
        count = await ctx.artifacts.fetch(needed, workspace)
        if count:
            sink.note(f"fetched {count} artifact file(s) from {needed!r}")
    if job.cache is None:
        return None
    files = job.cache.key.files if job.cache.key else []
    prefix = job.cache.key.prefix if job.cache.key else None
    key = cache_key(job.base, workspace, files, prefix)
    hit = await ctx.cache.restore(key, workspace)
    sink.note(f"cache {'hit' if hit else 'miss'} for key {key[:16]}…")
    return f"{'hit' if hit else 'miss'}:{key}"


async def _after_script(
    job: PlannedJob,
    executor: ShellExecutor,
    workspace: Path,
    env: dict[str, str],
    root: Path,
    sink: LogSink,
) -> None:
    sink.note("running after_script")
    after = await executor.run(
        job.after_script,
        cwd=workspace,
        env=env,
        timeout_s=AFTER_SCRIPT_TIMEOUT_S,
        output=sink.feed,
        script_path=root / "after_script.sh",
    )
    sink.flush()
    if after.outcome is not ExecOutcome.PASSED:
        sink.note(f"after_script did not pass ({after.detail}); the job's status is unchanged")


def _result(number: int, executed: ExecResult) -> AttemptResult:
    status = {
        ExecOutcome.PASSED: JobStatus.SUCCESS,
        ExecOutcome.CANCELED: JobStatus.CANCELED,
    }.get(executed.outcome, JobStatus.FAILED)
    return AttemptResult(
        number,
        status,
        executed.exit_code,
        executed.failure_class,
        executed.duration_s,
        executed.detail,
    )


def _collect_reports(
    job: PlannedJob, workspace: Path, result: AttemptResult, sink: LogSink
) -> None:
    """Parse the job's reports (whatever its outcome), then judge its gates."""
    reports = job.reports
    if reports is not None and reports.junit:
        _read_junit(reports.junit, workspace, result)
    if reports is not None and reports.coverage:
        _read_coverage(reports.coverage, workspace, result)
    for kind, problem in result.report_problems.items():
        sink.note(f"{kind} report: {problem}")
    if result.junit is not None:
        j = result.junit
        sink.note(f"tests: {j.passed} passed, {j.failed} failed, {j.skipped} skipped")
    if result.coverage is not None:
        sink.note(f"coverage: {result.coverage:g}%")
    if result.status is JobStatus.SUCCESS:
        _apply_gates(job, result, sink)


def _read_junit(patterns: list[str], workspace: Path, result: AttemptResult) -> None:
    files = match_files(workspace, patterns)
    if not files:
        result.report_problems["junit"] = f"no file matches {', '.join(patterns)}"
        return
    try:
        result.junit = parse_junit(workspace / f for f in files)
    except ReportError as exc:
        result.report_problems["junit"] = str(exc)


def _read_coverage(path: str, workspace: Path, result: AttemptResult) -> None:
    if not (workspace / path).is_file():
        result.report_problems["coverage"] = f"{path} was not written"
        return
    try:
        result.coverage = parse_cobertura(workspace / path)
    except ReportError as exc:
        result.report_problems["coverage"] = str(exc)


def _apply_gates(job: PlannedJob, result: AttemptResult, sink: LogSink) -> None:
    result.gates = judge(job.gates, result.junit, result.coverage, result.report_problems)
    for gate in result.gates:
        sink.note(f"gate {gate.gate}: {'passed' if gate.passed else 'FAILED'}: {gate.message}")
    failed = [g for g in result.gates if not g.passed]
    if failed:
        result.status = JobStatus.FAILED
        result.failure_class = FailureClass.GATE
        result.detail = "; ".join(g.message for g in failed)


async def _finish_success(
    ctx: AttemptContext,
    job: PlannedJob,
    workspace: Path,
    result: AttemptResult,
    key: str | None,
    sink: LogSink,
) -> None:
    try:
        if job.artifacts is not None:
            result.artifacts = await ctx.artifacts.publish(job.name, workspace, job.artifacts.paths)
            if not result.artifacts:
                sink.note(f"warning: no file matches artifacts {', '.join(job.artifacts.paths)}")
            for stored in result.artifacts:
                sink.note(f"artifact {stored.path} {stored.digest} ({stored.size} bytes)")
        if key is not None and job.cache is not None:
            count = await ctx.cache.save(key.partition(":")[2], workspace, job.cache.paths)
            sink.note(f"cache saved: {count} file(s)")
    except OSError as exc:
        sink.note(f"could not save the job's outputs: {exc}")
        result.status = JobStatus.FAILED
        result.failure_class = FailureClass.INFRA
        result.detail = f"saving outputs failed: {exc}"
