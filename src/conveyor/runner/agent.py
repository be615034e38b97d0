"""`conveyor runner`: takes jobs from a coordinator over HTTP and runs them.

The runner dials out (no inbound port), long-polls for a job, checks the commit out from a
local mirror of the repository, runs the job with the same code `conveyor run` uses,
streams its log by byte offset, renews its lease, and reports the outcome. On SIGTERM it
takes no new job and stops once its current jobs are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from opentelemetry.trace import SpanKind

from conveyor.domain.failure import FailureClass
from conveyor.domain.status import JobStatus
from conveyor.observability import tracing
from conveyor.observability.logs import bound
from conveyor.pipeline.plan import job_from_json
from conveyor.pipeline.triggers import Event
from conveyor.protocol.errors import StaleLease
from conveyor.protocol.runner import Assignment
from conveyor.runner.attempt import (
    AttemptContext,
    AttemptResult,
    RunInfo,
    base_environment,
    run_attempt,
)
from conveyor.runner.client import Client
from conveyor.runner.remote import RemoteArtifacts, RemoteCache, RemoteDeployer
from conveyor.runner.shell import ShellExecutor
from conveyor.runner.workspace import source_files
from conveyor.vcs import GitError, MirrorSet
from conveyor.waiting import event_or_timeout

log = logging.getLogger("conveyor.runner")
LOG_FLUSH_S = 0.25
TAIL_MAX = 256 * 1024
"""A log tail up to this size goes with the finish request; a larger one on its own."""
CHECKOUTS_KEPT = 8


@dataclass(frozen=True)
class RunnerConfig:
    server: str
    token: str
    data_dir: Path
    name: str = field(default_factory=socket.gethostname)
    labels: tuple[str, ...] = ()
    concurrency: int = 1
    poll_s: float = 30.0
    kill_grace_s: float = 5.0


class LogShipper:
    """Collects a job's masked output and sends it in chunks at increasing offsets."""

    def __init__(self, client: Client, job_id: str, fence: int, offset: int = 0) -> None:
        self.client = client
        self.job_id = job_id
        self.fence = fence
        self.offset = offset
        self._buffer = bytearray()

    def job_log(self, job: str, line: str) -> None:
        self._buffer += (line + "\n").encode()

    def job_status(self, job: str, status: JobStatus, detail: str) -> None:
        return

    async def flush(self) -> None:
        if not self._buffer:
            return
        data = bytes(self._buffer)
        await self.client.log(self.job_id, self.fence, self.offset, data)
        del self._buffer[: len(data)]
        self.offset += len(data)

    async def tail(self) -> tuple[int, str] | None:
        """What is left to send, for the finish request (offset, text); a tail too large
        for one chunk is sent on its own first."""
        if len(self._buffer) > TAIL_MAX:
            await self.flush()
        if not self._buffer:
            return None
        return self.offset, self._buffer.decode(errors="replace")

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every LOG_FLUSH_S until `stop`; a failed send is tried again at the next
        tick (the bytes stay buffered and keep their offset). What is left at `stop` goes
        with the outcome (see `tail`)."""
        while True:
            if await event_or_timeout(stop, LOG_FLUSH_S):
                return
            try:
                await self.flush()
            except httpx.HTTPError as exc:
                log.warning("job %s: log chunk not sent yet (%s)", self.job_id, exc)


class Agent:
    """Runs `concurrency` workers, each taking one job at a time."""

    def __init__(self, config: RunnerConfig, client: Client) -> None:
        self.config = config
        self.client = client
        self.executor = ShellExecutor(kill_grace_s=config.kill_grace_s)
        self.stopping = asyncio.Event()
        self.mirrors = MirrorSet(config.data_dir / "mirrors")
        self.jobs_done = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._file_lists: dict[Path, tuple[str, ...]] = {}

    def stop(self) -> None:
        """Take no new job; the current ones finish."""
        self.stopping.set()

    async def serve(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(max(1, self.config.concurrency))))

    async def _worker(self) -> None:
        while not self.stopping.is_set():
            try:
                assignment = await self._next()
            except httpx.HTTPError as exc:
                log.warning("cannot reach the coordinator: %s", exc)
                await event_or_timeout(self.stopping, 2.0)
                continue
            if assignment is None:
                continue
            try:
                await self.execute(assignment)
            except Exception:  # a job's fault never ends the runner; its lease runs out
                log.exception("job %s: the attempt broke off", assignment.job_id)
            self.jobs_done += 1

    async def _next(self) -> Assignment | None:
        request = asyncio.create_task(self.client.request(self.config.poll_s))
        stopping = asyncio.create_task(self.stopping.wait())
        done, _ = await asyncio.wait({request, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if request in done:
            return request.result()
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await request
        return None

    async def execute(self, assignment: Assignment) -> None:
        with (
            bound(job_id=assignment.job_id, run_id=assignment.run_id),
            tracing.span(
                "job.attempt",
                assignment.traceparent,
                SpanKind.CONSUMER,
                attributes={
                    "conveyor.job_id": str(assignment.job_id),
                    "conveyor.run_id": str(assignment.run_id),
                    "conveyor.attempt": assignment.attempt,
                    "conveyor.project": assignment.project,
                },
            ),
        ):
            await self._execute(assignment)

    async def _execute(self, assignment: Assignment) -> None:
        job_id, fence = str(assignment.job_id), assignment.fence
        shipper = LogShipper(self.client, job_id, fence, assignment.log_offset)
        cancel = asyncio.Event()
        done = asyncio.Event()
        every = assignment.lease_s / 3
        beats = asyncio.create_task(self._heartbeats(job_id, fence, every, cancel, done))
        shipping = asyncio.create_task(shipper.run(done))
        root = self.config.data_dir / "jobs" / job_id
        try:
            result = await self._attempt(assignment, root, shipper, cancel)
            tracing.annotate(
                {"conveyor.status": result.status.value, "conveyor.exit_code": result.exit_code}
            )
        except StaleLease as exc:
            # Fenced off (canceled, or requeued after a lost lease) while the job talked to
            # the coordinator: the job is no longer this runner's; it is simply dropped.
            log.warning("job %s: dropped, the coordinator fenced it off (%s)", job_id, exc)
            return
        finally:
            done.set()
            await asyncio.gather(beats, shipping, return_exceptions=True)
            shutil.rmtree(root, ignore_errors=True)
        if result.status is JobStatus.BLOCKED:
            log.info("job %s: handed back, blocked: %s", job_id, result.detail)
            return
        try:
            await self.client.finish(job_id, fence, result, await shipper.tail())
        except StaleLease:
            log.warning("job %s: lease lost; the coordinator has requeued it", job_id)
        except httpx.HTTPError as exc:
            # The lease runs out and the coordinator retries the job as runner_lost.
            log.warning("job %s: cannot report the outcome (%s)", job_id, exc)

    async def _heartbeats(
        self,
        job_id: str,
        fence: int,
        every: float,
        cancel: asyncio.Event,
        done: asyncio.Event,
    ) -> None:
        while not done.is_set():
            if await event_or_timeout(done, every):
                return
            try:
                if await self.client.heartbeat(job_id, fence):
                    cancel.set()
            except StaleLease:
                cancel.set()
                return
            except httpx.HTTPError as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _attempt(
        self, assignment: Assignment, root: Path, shipper: LogShipper, cancel: asyncio.Event
    ) -> AttemptResult:
        job = job_from_json(assignment.spec)
        if job.checkout:
            try:
                checkout = await self._checkout(assignment.repo_url, assignment.sha)
            except (GitError, OSError) as exc:
                shipper.job_log(job.name, f"[conveyor] checkout failed: {exc}")
                return _infra_failure(assignment.attempt, f"checkout failed: {exc}")
            source = (checkout / assignment.config_path).parent
        else:  # `checkout: false`: the job starts in an empty workspace
            source = root / "no-checkout"
            source.mkdir(parents=True, exist_ok=True)
        run = RunInfo(
            run_id=str(assignment.run_id),
            service=assignment.service,
            team=assignment.team,
            event=Event(kind=assignment.event, ref=assignment.ref, sha=assignment.sha),
        )
        job_id, fence = str(assignment.job_id), assignment.fence
        context = AttemptContext(
            run=run,
            run_dir=root / "run",
            source_dir=source,
            files=self._files(source) if job.checkout else (),
            base_env=base_environment(),
            secrets=dict(assignment.secrets),
            cache=RemoteCache(self.client, job_id, fence),
            artifacts=RemoteArtifacts(self.client, job_id, fence, root / "scratch"),
            deployer=RemoteDeployer(self.client, job_id, fence),
            keep_workspaces=False,
        )
        return await run_attempt(context, job, assignment.attempt, self.executor, cancel, shipper)

    async def _checkout(self, url: str, sha: str) -> Path:
        """A read-only checkout of `sha`, shared by every job of that commit on this runner
        (each attempt still gets its own copy as its workspace). The newest
        CHECKOUTS_KEPT commits are kept."""
        key = hashlib.sha256(f"{url}\0{sha}".encode()).hexdigest()[:32]
        dest = self.config.data_dir / "checkouts" / key
        async with self._locks.setdefault(key, asyncio.Lock()):
            if dest.is_dir():
                os.utime(dest)
                return dest
            mirror = self.mirrors.get(url)
            if not await mirror.has(sha):
                await mirror.fetch()
            partial = dest.with_name(key + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.parent.mkdir(parents=True, exist_ok=True)
            await mirror.checkout(sha, partial)
            partial.rename(dest)
        self._prune(dest.parent)
        return dest

    def _files(self, source: Path) -> tuple[str, ...]:
        if source not in self._file_lists:
            self._file_lists[source] = tuple(source_files(source))
        return self._file_lists[source]

    def _prune(self, root: Path) -> None:
        kept = sorted(
            (p for p in root.iterdir() if p.is_dir() and not p.name.endswith(".partial")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in kept[CHECKOUTS_KEPT:]:
            self._file_lists = {
                k: v for k, v in self._file_lists.items() if not k.is_relative_to(old)
            }
            shutil.rmtree(old, ignore_errors=True)


def _infra_failure(number: int, detail: str) -> AttemptResult:
    return AttemptResult(number, JobStatus.FAILED, None, FailureClass.INFRA, 0.0, detail)
