"""The scheduler: moves jobs through their lifecycle in the database, safely from any number
of coordinator replicas.

Every change is a guarded update (storage.jobs.move_job), so a replica that loses a race
simply gets TransitionRejected. Results are handled before new work (STYLE.md): `finish`
and `expire_leases` advance runs at once, so a run's progress never waits for a polling
interval, and waiting runners are woken.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from conveyor.domain import fair_share
from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.failure import FailureClass
from conveyor.domain.principal import RunnerIdentity
from conveyor.domain.retry import retry_due
from conveyor.domain.status import JobStatus
from conveyor.observability import metrics, tracing
from conveyor.pipeline.plan import Plan, PlannedJob, job_from_json
from conveyor.pipeline.progress import Move, settle
from conveyor.pipeline.schema import ConcurrencyPolicy
from conveyor.pipeline.triggers import EventKind
from conveyor.protocol.errors import NotYours, StaleLease
from conveyor.protocol.runner import Assignment, AttemptOutcome
from conveyor.scheduler.wakeup import Wakeup
from conveyor.storage import jobs, names, notify, queue, runs
from conveyor.storage.database import Database, Session
from conveyor.storage.jobs import Ended, JobRecord, TransitionRejected, move_job, sources_of
from conveyor.storage.logs import append_chunk, log_end
from conveyor.storage.projects import ProjectRecord
from conveyor.storage.runs import CreatedRun, RunRecord, create_run, release_dedupe_key
from conveyor.storage.secrets import SecretBox

LEASE_S = 15.0
NOTIFY_CHANNEL = "conveyor_jobs"
log = logging.getLogger("conveyor.scheduler")
SUPERSEDING_EVENTS = frozenset({EventKind.PUSH, EventKind.PULL_REQUEST, EventKind.MANUAL})
"""A new run from these events cancels the interruptible jobs of older runs on its ref."""


@dataclass(frozen=True)
class RunStart:
    """A run to start: its project, its compiled plan, and the pipeline it names."""

    project: ProjectRecord
    plan: Plan
    pipeline: str
    received_at: datetime | None = None
    """When the delivery that asks for it arrived (push → start is timed from here)."""
    traceparent: str | None = None
    """The trace it is started in; else the current span's (observability.tracing)."""


def _count_start(job: JobRecord, run: RunRecord, team: str) -> None:
    """A job's wait in the queue; for a first job of its run (one with no needs, on its
    first attempt), the time since its push arrived."""
    started = as_utc(job.started_at) if job.started_at else utcnow()
    if job.queued_at is not None:
        wait = (started - as_utc(job.queued_at)).total_seconds()
        metrics.job_queue_wait.labels(team).observe(max(wait, 0.0))
    if job.attempt == 1 and not job.spec.get("needs"):
        pushed = as_utc(run.received_at or run.created_at)
        metrics.push_to_start.labels(team).observe(max((started - pushed).total_seconds(), 0.0))


async def _count_end(
    session: Session, job: JobRecord | Ended, attempt: JobStatus, status: JobStatus
) -> None:
    """An attempt's duration by stage, and the job's end when it is final."""
    team = await names.team(session, job.team_id)
    stage = job.stage if isinstance(job, Ended) else str(job.spec.get("stage", ""))
    if job.started_at is not None:
        ran = (utcnow() - as_utc(job.started_at)).total_seconds()
        metrics.job_duration.labels(team, stage, attempt.value).observe(max(ran, 0.0))
    if status.is_final:
        metrics.jobs_finished.labels(team, status.value).inc()


def _kind(runner: RunnerIdentity) -> tuple[uuid.UUID | None, tuple[str, ...]]:
    """What decides which jobs a runner may take: its team and its labels."""
    return runner.team_id, tuple(sorted(runner.labels or ()))


def newest_wins(job: PlannedJob) -> bool:
    """A job whose concurrency group keeps only the newest pending job."""
    return job.concurrency is not None and job.concurrency.policy is ConcurrencyPolicy.NEWEST_WINS


def _owned(
    job_id: uuid.UUID, holder: uuid.UUID | None, runner_id: uuid.UUID | None, *, exists: bool
) -> None:
    """A runner's write reaches only a job leased to it (checked when `runner_id` is given,
    as the runner protocol's routes do): NotYours otherwise."""
    if runner_id is not None and (not exists or holder != runner_id):
        raise NotYours(f"no job {job_id} for this runner")


class Scheduler:
    """Runs and jobs in the database. Every public method is one or more transactions."""

    def __init__(
        self,
        db: Database,
        *,
        lease_s: float = LEASE_S,
        secrets: SecretBox | None = None,
        hints: bool = True,
    ) -> None:
        self.db = db
        self.hints = hints
        """Whether every job made pending is announced to this process (see
        `may_have_work`)."""
        self.lease_s = lease_s
        self.secrets = secrets
        self.wakeup = Wakeup()
        self.origin = uuid.uuid4().hex[:12]
        """This replica, in its announcements: it wakes its own requests directly and
        ignores its own NOTIFY when it comes back over LISTEN."""
        self.finished = 0
        """Attempts this process recorded (GET /api/v1/stats)."""
        self.claims = 0
        self.empty_claims = 0
        """Claims this process served, and those that found no job for the runner."""
        self._empty: dict[tuple[uuid.UUID | None, tuple[str, ...]], int] = {}
        """Per kind of runner (team, labels): the generation at which a claim last found
        nothing."""

    # -- wake-ups across replicas --------------------------------------------------------

    async def _announce(self, session: Session, count: int = 1) -> None:
        """On PostgreSQL, tell every replica (at commit) how many jobs became pending."""
        if not self.db.is_sqlite:
            await notify.announce(session, NOTIFY_CHANNEL, f"{self.origin}:{count}")

    async def listen(self) -> None:
        """On PostgreSQL, wake this replica's waiting runners whenever any replica
        announces pending jobs (storage.notify reconnects after errors); runs until
        cancelled."""
        if self.db.is_sqlite:
            return
        async for payload in notify.listen(self.db, NOTIFY_CHANNEL):
            origin, _, count = payload.rpartition(":")
            if origin != self.origin:
                self.wakeup.notify(int(count) if count.isdigit() else 1)

    # -- runs ------------------------------------------------------------------------

    async def start_run(
        self, project: ProjectRecord, plan: Plan, *, pipeline: str, durable: bool = True
    ) -> CreatedRun:
        """Store a run from its plan (or find the same commit's run) and make its first
        jobs pending. Not `durable` when the caller can start it again after a database
        crash (the inbox can; an API caller that was told of the run cannot)."""
        return (await self.start_runs([RunStart(project, plan, pipeline)], durable=durable))[0]

    async def start_runs(
        self, starts: Sequence[RunStart], *, durable: bool = True
    ) -> list[CreatedRun]:
        """`start_run` for several runs in one transaction, in order (a later run on a
        ref supersedes an earlier one as if they came one by one): the inbox's batch."""
        settled = []
        for start in starts:
            jobs = {job.name: job for job in start.plan.jobs}
            moves = settle(
                jobs,
                {job.name: job.needs for job in start.plan.jobs},
                dict.fromkeys(jobs, JobStatus.CREATED),
                {job.name: job.allow_failure for job in start.plan.jobs},
            )
            settled.append((jobs, moves, [m.name for m in moves if m.status is JobStatus.PENDING]))
        async with self.db.transaction(durable=durable) as session:
            # Each run's `run.queued` event waits for the commit, so that a batch's events
            # go in as one INSERT rather than one each (nothing here reads them back).
            with session.sync_session.no_autoflush:
                out, ready = await self._start_each(session, starts, settled)
            if ready:
                await self._announce(session, ready)
        if ready:
            self.wakeup.notify(ready)
        return out

    async def _start_each(
        self,
        session: Session,
        starts: Sequence[RunStart],
        settled: list[tuple[dict[str, PlannedJob], list[Move], list[str]]],
    ) -> tuple[list[CreatedRun], int]:
        """Each run in turn; returns them, and how many of their jobs became pending."""
        out: list[CreatedRun] = []
        ready = 0
        for start, (planned, moves, pending) in zip(starts, settled, strict=True):
            project, plan = start.project, start.plan
            created = await create_run(
                session,
                project,
                plan,
                pipeline=start.pipeline,
                initial=moves,
                received_at=start.received_at,
                traceparent=start.traceparent or tracing.traceparent(),
            )
            out.append(created)
            if not created.created:
                continue
            ready += len(pending)
            for name in pending:
                if newest_wins(planned[name]):
                    ready += await self._supersede_group(session, created.jobs[name])
            if plan.event.effective_kind in SUPERSEDING_EVENTS:
                ready += await self._supersede(session, project.id, plan.event.ref, created.run_id)
        return out, ready

    async def _supersede(
        self, session: Session, project_id: uuid.UUID, ref: str, newest: uuid.UUID
    ) -> int:
        """A new run on a ref cancels the unfinished `interruptible` jobs of the older runs
        on that ref (GitLab's auto-cancel); jobs that are not interruptible, such as
        deploys, carry on. Returns how many jobs of those runs became pending."""
        rows = await jobs.interruptible_on_ref(session, project_id, ref, newest)
        touched: set[uuid.UUID] = set()
        for job_id, run_id in rows:
            canceled = await jobs.try_move(
                session,
                job_id,
                JobStatus.CANCELED,
                reason=f"superseded by run {newest}",
                finished_at=utcnow(),
            )
            if canceled:  # else it finished meanwhile
                touched.add(run_id)
        return sum([await self.advance(session, run_id) for run_id in touched])

    async def play(self, job_id: uuid.UUID) -> None:
        """A person starts a manual job."""
        async with self.db.transaction() as session:
            await move_job(
                session, job_id, JobStatus.PENDING, queued_at=utcnow(), reason="started by hand"
            )
            await runs.reopen(session, job_id)
            await self._announce(session)
        self.wakeup.notify()

    async def advance(self, session: Session, run_id: uuid.UUID) -> int:
        """Move every `created` job of a run that can move; returns how many became
        pending. Repeats until nothing changes, so skips cascade in one call.

        A run with no job left in `created` costs one indexed query; only then are the
        jobs' specs read, so finishing the jobs of a wide run stays linear."""
        if not await jobs.has_created(session, run_id):
            return 0
        rows = await jobs.run_jobs(session, run_id)
        ids = {row.name: row.id for row in rows}
        statuses = {row.name: row.status for row in rows}
        created = {
            row.name: job_from_json(row.spec) for row in rows if row.status is JobStatus.CREATED
        }
        moves = settle(
            created,
            {row.name: tuple(row.spec.get("needs", ())) for row in rows},
            statuses,
            {row.name: bool(row.spec.get("allow_failure", False)) for row in rows},
        )
        for move in moves:
            values: dict[str, Any] = {"reason": move.reason}
            if move.status is JobStatus.PENDING:
                values["queued_at"] = utcnow()
            else:
                values["finished_at"] = utcnow()
            await move_job(session, ids[move.name], move.status, **values)
        ready = sum(1 for move in moves if move.status is JobStatus.PENDING)
        for move in moves:
            if move.status is JobStatus.PENDING and newest_wins(created[move.name]):
                ready += await self._supersede_group(session, ids[move.name])
        return ready

    async def cancel_run(self, run_id: uuid.UUID) -> int:
        """Cancel every job of the run that has not finished; returns how many."""
        count = 0
        async with self.db.transaction() as session:
            for job_id in await jobs.unfinished_of_run(session, run_id):
                await move_job(
                    session, job_id, JobStatus.CANCELED, reason="canceled", finished_at=utcnow()
                )
                count += 1
            await release_dedupe_key(session, run_id)
        return count

    # -- the runner protocol -----------------------------------------------------------

    async def wait(self, runner: RunnerIdentity, timeout: float) -> None:
        """Until a job is announced (see Wakeup), or `timeout` seconds."""
        await self.wakeup.wait(timeout, _kind(runner))

    def may_have_work(self, runner: RunnerIdentity) -> bool:
        """False when the last claim for this kind of runner found nothing and no job has
        been announced since: a runner's request right after its finish then waits for an
        announcement instead of asking the database for what it did not have."""
        return not self.hints or self._empty.get(_kind(runner)) != self.wakeup.generation

    async def claim(self, runner: RunnerIdentity) -> Assignment | None:
        """Lease the next job to a runner, or None when nothing is pending for it.

        Fair share (domain.fair_share): among the teams with pending jobs and room under
        their quota, the one with the fewest running jobs goes first, then the one served
        least recently, so teams take turns and a team that queues 10,000 jobs delays
        another team's single job by one pass at most. Within a team, the oldest queued
        job goes first.
        """
        postgres = not self.db.is_sqlite
        generation = self.wakeup.generation
        # Not durable: a lease lost in a database crash leaves the job pending, and it
        # runs again (at least once, as after a lost runner).
        async with self.db.transaction(durable=False) as session:
            self.claims += 1
            job = await self._lease_next(session, runner, postgres=postgres)
            if job is None:
                self.empty_claims += 1
                self._empty[_kind(runner)] = generation
                return None
            return await self._assignment(session, job.id)

    async def _lease_next(
        self, session: Session, runner: RunnerIdentity, *, postgres: bool
    ) -> queue.Candidate | None:
        """The first candidate, team by team in fair order, that the guarded UPDATE
        leases to the runner."""
        order = await queue.pending_teams(session, runner)
        if fair_share.needs_turns(order):
            running = await queue.running_by_team(session)
            order = fair_share.eligible(order, running)
            if len(order) > 1:
                served = await queue.last_served(session, [q.team_id for q in order])
                order = fair_share.fair_order(order, running, served)
        now = utcnow()
        for team in order:
            for job in await queue.candidates(session, runner, team.team_id, postgres=postgres):
                leased = await queue.lease(
                    session, job, runner, lease_s=self.lease_s, now=now, postgres=postgres
                )
                if leased:
                    return job
        return None

    async def _supersede_group(self, session: Session, newest: uuid.UUID) -> int:
        """`newest-wins`: a job that becomes pending skips the older pending jobs of its
        group (the running one finishes; the newest always runs next, so none starves).
        Returns how many jobs of their runs became pending (`when: always`)."""
        job = await jobs.job(session, newest)
        if job is None or job.concurrency_group is None:
            return 0
        older = await jobs.pending_in_group(session, job.team_id, job.concurrency_group, newest)
        for job_id, _ in older:
            await move_job(
                session,
                job_id,
                JobStatus.SKIPPED,
                reason=f"superseded by a newer job of group {job.concurrency_group!r}",
                finished_at=utcnow(),
            )
        return sum([await self.advance(session, run_id) for _, run_id in older])

    async def _assignment(self, session: Session, job_id: uuid.UUID) -> Assignment:
        found = await jobs.leased(session, job_id)
        job, run, project, team = found.job, found.run, found.project, found.team
        _count_start(job, run, team.name)
        secrets = self.secrets.open_all(project.id, found.secrets) if self.secrets else {}
        with tracing.span(
            "job.claim",
            run.traceparent,
            attributes={
                "conveyor.job_id": str(job.id),
                "conveyor.run_id": str(run.id),
                "conveyor.job": job.name,
                "conveyor.attempt": job.attempt,
                "conveyor.project": project.name,
            },
        ):
            traceparent = tracing.traceparent()
        return Assignment(
            secrets=secrets,
            traceparent=traceparent,
            # A first lease's log starts empty; a retry (or a deploy job taken up again
            # after it waited blocked) continues after what is there.
            log_offset=await log_end(session, job.id) if job.fence > 1 else 0,
            job_id=job.id,
            fence=job.fence,
            attempt=job.attempt,
            run_id=run.id,
            team=team.name,
            project=project.name,
            service=project.name,
            repo_url=project.repo_url,
            config_path=project.config_path,
            event=run.event,
            ref=run.ref,
            sha=run.sha,
            spec=job.spec,
            lease_s=self.lease_s,
        )

    async def heartbeat(
        self, job_id: uuid.UUID, fence: int, runner_id: uuid.UUID | None = None
    ) -> bool:
        """Extend the lease. Returns True when the job was canceled (the runner stops it).
        Raises StaleLease when the runner no longer holds the job, NotYours when the job
        was never leased to `runner_id` (when given)."""
        async with self.db.transaction() as session:
            until = utcnow() + timedelta(seconds=self.lease_s)
            if await jobs.renew(session, job_id, fence, runner_id, until):
                return False
            return await self._canceled_or_stale(session, job_id, fence, runner_id)

    async def _canceled_or_stale(
        self,
        session: Session,
        job_id: uuid.UUID,
        fence: int,
        runner_id: uuid.UUID | None,
    ) -> bool:
        row = await jobs.brief(session, job_id)
        _owned(job_id, row.runner_id if row else None, runner_id, exists=row is not None)
        if row is not None and row.fence == fence and row.status is JobStatus.CANCELED:
            return True
        raise StaleLease(f"job {job_id}: fencing token {fence} is stale")

    async def append_log(
        self,
        job_id: uuid.UUID,
        fence: int,
        offset: int,
        data: bytes,
        runner_id: uuid.UUID | None = None,
    ) -> None:
        """Store a log chunk at its byte offset; a re-sent chunk is written once."""
        async with self.db.transaction() as session:
            row = await jobs.brief(session, job_id)
            _owned(job_id, row.runner_id if row else None, runner_id, exists=row is not None)
            live = (JobStatus.RUNNING, JobStatus.CANCELED)
            if row is None or row.fence != fence or row.status not in live:
                raise StaleLease(f"job {job_id}: fencing token {fence} is stale")
            await append_chunk(session, row.team_id, job_id, offset, data)

    async def finish(
        self,
        job_id: uuid.UUID,
        fence: int,
        outcome: AttemptOutcome,
        runner_id: uuid.UUID | None = None,
        *,
        log: tuple[int, bytes] | None = None,
    ) -> JobStatus:
        """Record an attempt's outcome: retry it, or end the job; then advance the run.
        `log`, the last chunk of its log (offset, bytes), is stored with it."""
        async with self.db.transaction() as session:
            ended = await self._end_directly(session, job_id, fence, outcome, runner_id)
            row: JobRecord | Ended
            if ended is not None:  # the common case: one UPDATE … RETURNING
                row = ended
                status, run_id = outcome.status, ended.run_id
                if log is not None:
                    await append_chunk(session, ended.team_id, job_id, log[0], log[1])
                self._record_attempt(session, ended, outcome)
                ready = await self.advance(session, run_id)
            else:
                job = await jobs.job(session, job_id)
                _owned(job_id, job.runner_id if job else None, runner_id, exists=job is not None)
                assert job is not None  # _owned raised otherwise
                if job is None or job.fence != fence:
                    raise StaleLease(f"job {job_id}: fencing token {fence} is stale")
                if log is not None:  # rolled back below if the job is not live
                    await append_chunk(session, job.team_id, job_id, log[0], log[1])
                if job.status == JobStatus.CANCELED.value:
                    self._record_attempt(session, job, outcome)
                    return JobStatus.CANCELED
                if job.status != JobStatus.RUNNING.value:
                    raise StaleLease(f"job {job_id} is {job.status}, not running")
                row = job
                status = await self._settle(session, job, outcome)
                ready = await self.advance(session, job.run_id)
            woken = ready + (1 if status is JobStatus.PENDING else 0)
            if woken:
                await self._announce(session, woken)
            await _count_end(session, row, outcome.status, status)
        self.finished += 1
        if woken:
            self.wakeup.notify(woken)
        return status

    async def _end_directly(
        self,
        session: Session,
        job_id: uuid.UUID,
        fence: int,
        outcome: AttemptOutcome,
        runner_id: uuid.UUID | None,
    ) -> Ended | None:
        """End a running job held at `fence` with an outcome that is never retried (it did
        not fail), in one guarded UPDATE that returns what the attempt row needs; None
        when the job is not in that state (the caller finds out why)."""
        if outcome.status is JobStatus.FAILED or JobStatus.RUNNING not in sources_of(
            outcome.status
        ):
            return None
        cls = outcome.failure_class
        return await jobs.end_running(
            session,
            job_id,
            fence,
            runner_id,
            outcome.status,
            reason=outcome.detail,
            exit_code=outcome.exit_code,
            failure_class=cls.value if cls else None,
        )

    async def _settle(self, session: Session, job: JobRecord, outcome: AttemptOutcome) -> JobStatus:
        self._record_attempt(session, job, outcome)
        spec = job_from_json(job.spec)
        cls = outcome.failure_class
        retry = outcome.status is JobStatus.FAILED and retry_due(
            cls, job.attempt, spec.retry.max, spec.retry.when
        )
        common: dict[str, Any] = {
            "exit_code": outcome.exit_code,
            "failure_class": cls.value if cls else None,
            "lease_expires_at": None,
        }
        if retry:
            await move_job(
                session,
                job.id,
                JobStatus.PENDING,
                expect_fence=job.fence,
                queued_at=utcnow(),
                runner_id=None,
                reason=f"attempt {job.attempt} failed ({cls}); retrying",
                **common,
            )
            return JobStatus.PENDING
        await move_job(
            session,
            job.id,
            outcome.status,
            expect_fence=job.fence,
            finished_at=utcnow(),
            reason=outcome.detail,
            **common,
        )
        return outcome.status

    @staticmethod
    def _record_attempt(session: Session, job: JobRecord | Ended, outcome: AttemptOutcome) -> None:
        jobs.record_attempt(
            session,
            job,
            outcome.status,
            exit_code=outcome.exit_code,
            failure_class=outcome.failure_class.value if outcome.failure_class else None,
            detail=outcome.detail,
            reports=outcome.reports,
        )

    async def expire_leases(self, now: datetime | None = None) -> int:
        """Jobs whose runner stopped renewing the lease: a `runner_lost` failure, retried
        per the job's policy. Returns how many were expired."""
        moment = now or utcnow()
        async with self.db.transaction() as session:
            expired = await jobs.expired_leases(session, moment, skip_locked=not self.db.is_sqlite)
        lost = AttemptOutcome(
            status=JobStatus.FAILED,
            failure_class=FailureClass.RUNNER_LOST,
            detail="the runner stopped renewing its lease",
        )
        count = 0
        for job_id, fence in expired:
            try:
                await self.finish(job_id, fence, lost)
                count += 1
                metrics.lease_expiries.inc()
            except (StaleLease, TransitionRejected):
                continue  # the runner finished, or another replica got there first
        return count
