"""The `job` provider: a job of the deployment's own pipeline (a smoke or functional
test) run on runners against the canary. The first measurement of an analysis run
starts it, as a run of that one job at the deployment's commit, with
`CONVEYOR_PREVIEW_URL` (the canary's preview URL, or the environment's URL after
promotion) and `CONVEYOR_ENVIRONMENT` in its environment; until it ends there is no
data; then its measurement is its exit status (0 passed), which `max: 0` holds it to.

The run is named after the analysis run, so starting it again (another replica, after
a takeover) finds the same run instead of a second one (docs/ids.md). A deployment with
no commit (an artifact uploaded by hand) cannot run a job of its pipeline: no data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

from conveyor.analysis.providers.base import Measurement, Slot, SlotTarget
from conveyor.domain.status import JobStatus
from conveyor.pipeline.analysis import Metric
from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import parse_pipeline
from conveyor.pipeline.plan import plan_single
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.scheduler.service import Scheduler
from conveyor.storage import deployments, jobs
from conveyor.storage.database import Database
from conveyor.vcs import GitError, GitMirror

PREVIEW_URL = "CONVEYOR_PREVIEW_URL"


def pipeline_name(config_path: str, deployment_id: str, analysis: str) -> str:
    """The run's pipeline name: part of its dedupe key, one run per analysis run."""
    return f"{config_path}#analysis:{deployment_id}/{analysis}"


class JobProvider:
    def __init__(
        self, db: Database, scheduler: Scheduler, mirror: Callable[[str], GitMirror]
    ) -> None:
        self.db = db
        self.scheduler = scheduler
        self.mirror = mirror
        self._runs: dict[tuple[str, str], asyncio.Task[tuple[uuid.UUID | None, str]]] = {}
        """(analysis, metric) → starting its run (a git fetch may take a while, and a
        measurement may not), then the job's id."""

    async def close(self) -> None:
        for task in self._runs.values():
            task.cancel()

    async def measure(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        assert metric.job is not None
        canary = next((t for t in targets if t.slot is Slot.CANARY), None)
        if canary is None or canary.deployment_id is None or canary.analysis is None:
            return []
        key = (f"{canary.deployment_id}/{canary.analysis}", metric.name)
        starting = self._runs.get(key)
        if starting is None:
            starting = self._runs[key] = asyncio.create_task(self._start(metric.job, canary))
        if not starting.done():
            return [self._none(metric, start, end, f"starting job {metric.job}")]
        try:
            job_id, why = starting.result()
        except Exception as exc:  # tried again at the next measurement
            del self._runs[key]
            return [self._none(metric, start, end, f"could not start job: {exc}")]
        if job_id is None:
            return [self._none(metric, start, end, why)]
        async with self.db.transaction() as session:
            row = await jobs.job(session, job_id)
        if row is None:
            return [self._none(metric, start, end, f"job {metric.job} is gone")]
        status = JobStatus(row.status)
        if not status.is_final:
            return [self._none(metric, start, end, f"job {metric.job} is {status.value}")]
        if status not in (JobStatus.SUCCESS, JobStatus.FAILED):
            return [self._none(metric, start, end, f"job {metric.job} was {status.value}")]
        code = 0 if status is JobStatus.SUCCESS else (row.exit_code or 1)
        detail = f"job {metric.job} {status.value} (exit {code})"
        return [Measurement(metric.name, Slot.CANARY, float(code), 1, start, end, detail)]

    @staticmethod
    def _none(metric: Metric, start: float, end: float, why: str) -> Measurement:
        return Measurement(metric.name, Slot.CANARY, None, 0, start, end, why)

    async def _start(self, name: str, canary: SlotTarget) -> tuple[uuid.UUID | None, str]:
        assert canary.deployment_id is not None and canary.analysis is not None
        async with self.db.transaction() as session:
            found = await deployments.with_origin(session, uuid.UUID(canary.deployment_id))
        if found is None:
            return None, "the deployment is gone"
        deployment, project, ref = found
        if not deployment.sha:
            return None, f"the deployment has no commit to run job {name} from"
        try:
            mirror = self.mirror(project.repo_url)
            if not await mirror.has(deployment.sha):
                await mirror.fetch()
            text = await mirror.read(deployment.sha, project.config_path)
            spec = parse_pipeline(text, project.config_path).spec
        except (GitError, PipelineInvalid) as exc:
            return None, f"cannot read job {name} at {deployment.sha[:12]}: {exc}"
        if name not in spec.jobs:
            return None, f"the pipeline at {deployment.sha[:12]} has no job {name!r}"
        # A ref of its own: a new run on a ref cancels the older runs' interruptible jobs
        # there, and this one must not cancel the pipeline that deploys.
        own_ref = f"refs/conveyor/analysis/{canary.deployment_id}/{canary.analysis}"
        event = Event(kind=EventKind.MANUAL, ref=own_ref, sha=deployment.sha)
        env = {
            PREVIEW_URL: canary.url or "",
            "CONVEYOR_ENVIRONMENT": canary.environment or "",
            "CONVEYOR_DEPLOYED_REF": ref or "",
        }
        plan = plan_single(spec, event, name, env, f"analysis {canary.analysis} runs it")
        pipeline = pipeline_name(project.config_path, canary.deployment_id, canary.analysis)
        created = await self.scheduler.start_run(project, plan, pipeline=pipeline)
        async with self.db.transaction() as session:
            states = await jobs.run_jobs(session, created.run_id)
        job_id = next((s.id for s in states if s.name == name), None)
        return job_id, "" if job_id else f"the run of job {name} has no such job"
