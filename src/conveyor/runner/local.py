"""Run a whole plan on this machine, with no server: `conveyor run`.

Jobs run with the same shell executor, workspaces, masking, reports and gates that
runners use. Ready jobs start as soon as their needs finish, up to `parallel` at a time;
what happens after a failure follows pipeline.progress, the rules the server shares.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, field

from conveyor.domain.retry import retry_due
from conveyor.domain.status import JobOutcome, JobStatus, RunStatus, run_status
from conveyor.ids import new_id
from conveyor.pipeline.plan import Plan, PlannedJob
from conveyor.pipeline.progress import CANCELED_RUN, settle
from conveyor.runner.attempt import (
    AttemptContext,
    AttemptResult,
    RunInfo,
    RunObserver,
    RunOptions,
    run_attempt,
)
from conveyor.runner.shell import ShellExecutor


@dataclass
class LocalJob:
    """Everything the summary and `--report` say about one job."""

    job: PlannedJob
    status: JobStatus = JobStatus.CREATED
    reason: str = ""
    attempts: list[AttemptResult] = field(default_factory=list)

    @property
    def last(self) -> AttemptResult | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def duration_s(self) -> float:
        return sum(a.duration_s for a in self.attempts)

    def as_dict(self) -> dict[str, object]:
        last = self.last
        return {
            "name": self.job.name,
            "stage": self.job.stage,
            "status": self.status.value,
            "attempts": len(self.attempts),
            "exit_code": last.exit_code if last else None,
            "duration_s": round(self.duration_s, 3),
            "reason": self.reason,
            "failure_class": last.failure_class.value if last and last.failure_class else None,
            "allow_failure": self.job.allow_failure,
            "reports": last.reports_dict() if last else {},
            "gates": [g.as_dict() for g in last.gates] if last else [],
            "artifacts": [a.as_dict() for a in last.artifacts] if last else [],
            "cache": last.cache if last else None,
            "attempt_history": [a.as_dict() for a in self.attempts],
        }


@dataclass
class RunResult:
    run_id: str
    plan: Plan
    jobs: list[LocalJob]
    duration_s: float
    canceled: bool = False

    @property
    def status(self) -> RunStatus:
        if not self.plan.triggered:
            return RunStatus.SKIPPED
        status = run_status(JobOutcome(r.status, r.job.allow_failure) for r in self.jobs)
        if self.canceled and status is not RunStatus.FAILED:
            return RunStatus.CANCELED
        return status

    def as_report(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "service": self.plan.service,
            "team": self.plan.team,
            "event": self.plan.event.effective_kind.value,
            "ref": self.plan.event.ref,
            "sha": self.plan.event.sha,
            "status": self.status.value,
            "reasons": list(self.plan.trigger.reasons),
            "duration_s": round(self.duration_s, 3),
            "jobs": [r.as_dict() for r in self.jobs],
        }


def select_jobs(plan: Plan, selected: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """The jobs to run for `--job` names (a base name selects every matrix instance),
    with everything they need; and the selected ones, which are played even if manual."""
    chosen = {j.name for j in plan.jobs if j.name in selected or j.base in selected}
    missing = [s for s in selected if not any(s in (j.name, j.base) for j in plan.jobs)]
    if missing:
        raise KeyError(missing[0])
    closure = set(chosen)
    for name in chosen:
        closure |= plan.ancestors.get(name, frozenset())
    return closure, chosen


DEPLOY_NOT_LOCAL = (
    "deploy jobs are carried out by the deployment manager of a coordinator (`conveyor serve`)"
)


def _not_local(job: PlannedJob) -> str | None:
    """Why a job that is due cannot run in `conveyor run`: a deploy needs a coordinator."""
    return DEPLOY_NOT_LOCAL if job.deploy is not None else None


class LocalRun:
    """One run of a plan. Create, then `await execute()`; `cancel()` stops it cleanly."""

    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        observer: RunObserver,
        executor: ShellExecutor | None = None,
    ) -> None:
        self.plan = plan
        self.options = options
        self.observer = observer
        self.executor = executor or ShellExecutor(kill_grace_s=options.kill_grace_s)
        self.run_id = str(new_id())
        self.run_dir = options.data_dir / "runs" / self.run_id
        self._cancel = asyncio.Event()
        played: set[str] = set()
        wanted = {j.name for j in plan.jobs}
        if options.selected:
            wanted, played = select_jobs(plan, options.selected)
        self._played = played
        self.records = {j.name: LocalJob(j) for j in plan.jobs if j.name in wanted}

    def cancel(self) -> None:
        """Stop: running jobs get their process groups killed, the rest are canceled."""
        self._cancel.set()

    async def execute(self) -> RunResult:
        started = time.monotonic()
        if self.plan.triggered:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            info = RunInfo.of_plan(self.plan, self.run_id)
            context = AttemptContext.create(info, self.options, self.run_dir)
            await self._schedule(context)
            if not self.options.keep_workspaces:
                shutil.rmtree(self.run_dir / "work", ignore_errors=True)
        return RunResult(
            run_id=self.run_id,
            plan=self.plan,
            jobs=list(self.records.values()),
            duration_s=time.monotonic() - started,
            canceled=self._cancel.is_set(),
        )

    def _set(self, record: LocalJob, status: JobStatus, reason: str = "") -> None:
        record.status = status
        record.reason = reason
        self.observer.job_status(record.job.name, status, reason)

    def _decide(self) -> list[LocalJob]:
        """Move every `created` job that can move (pipeline.progress.settle, the rules
        the server's scheduler follows); return the ones to start."""
        records = self.records
        moves = settle(
            {n: r.job for n, r in records.items() if r.status is JobStatus.CREATED},
            {n: r.job.needs for n, r in records.items()},
            {n: r.status for n, r in records.items()},
            {n: r.job.allow_failure for n, r in records.items()},
            played=self._played,
            canceled=self._cancel.is_set(),
            refuse=_not_local,
        )
        for move in moves:
            self._set(records[move.name], move.status, move.reason)
        return [records[m.name] for m in moves if m.status is JobStatus.PENDING]

    async def _schedule(self, context: AttemptContext) -> None:
        queue: list[LocalJob] = []
        running: dict[asyncio.Task[object], LocalJob] = {}
        canceled: asyncio.Task[object] = asyncio.create_task(self._cancel.wait())
        try:
            while True:
                queue += self._decide()
                while queue and len(running) < max(1, self.options.parallel):
                    record = queue.pop(0)
                    if self._cancel.is_set():
                        self._set(record, JobStatus.CANCELED, CANCELED_RUN)
                        continue
                    running[asyncio.create_task(self._run_job(record, context))] = record
                if not running:
                    if queue:
                        continue
                    return
                done, _ = await asyncio.wait(
                    {*running, canceled}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if task is not canceled:
                        running.pop(task)
                        task.result()
        finally:
            canceled.cancel()

    async def _run_job(self, record: LocalJob, context: AttemptContext) -> None:
        job = record.job
        self._set(record, JobStatus.RUNNING, "started")
        for number in range(1, job.retry.max + 2):
            result = await run_attempt(
                context, job, number, self.executor, self._cancel, self.observer
            )
            record.attempts.append(result)
            if result.status is JobStatus.SUCCESS or result.status is JobStatus.CANCELED:
                break
            cls = result.failure_class
            if not retry_due(cls, number, job.retry.max, job.retry.when):
                break
            if self._cancel.is_set():
                break
            self.observer.job_status(
                job.name, JobStatus.RUNNING, f"attempt {number} failed ({cls}); retrying"
            )
        last = record.attempts[-1]
        self._set(record, last.status, last.detail)
