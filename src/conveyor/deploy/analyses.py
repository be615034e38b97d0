"""The driver's analyses: on every pass, the runs the planner says are due
(planner.analyses_due) are started, the ones no longer due are stopped, and each running
one is measured and judged once per `interval` (analysis.evaluation), its evaluation and
new phase stored under the environment's lease. The planner then reads their phases:
a failed run aborts the deployment (or, after promotion, rolls it back), an inconclusive
one pauses it, a passed step goes on.

The tallies of a run live in the memory of the replica that drives the environment. A
replica that takes over starts them again from its first window (each count test is
anytime-valid, so a new start costs time to a verdict, never its error rate), and keeps
the stored failures and the extension count.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from conveyor.analysis.evaluation import Evaluation, judgement_json, measurement_json, worst
from conveyor.analysis.judge import Analysis, Judgement, Limits
from conveyor.analysis.providers.alert import AlertProvider
from conveyor.analysis.providers.base import (
    Instance,
    Measurement,
    MetricProvider,
    Reported,
    RequestSource,
    Slot,
    SlotTarget,
)
from conveyor.analysis.providers.http import HttpProvider
from conveyor.analysis.providers.job import JobProvider
from conveyor.analysis.providers.logs import LogsProvider
from conveyor.analysis.providers.process import ProcessProvider
from conveyor.analysis.providers.prometheus import PrometheusProvider
from conveyor.analysis.providers.router import RouterProvider
from conveyor.deploy import records
from conveyor.deploy.context import Driven, DriverContext
from conveyor.deploy.planner import analyses_due, target_slot
from conveyor.deploy.world import Due, Judged, World
from conveyor.domain.analysis import AnalysisPhase
from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.deploy import InstanceState
from conveyor.hosting.routing import SHARE_SCALE
from conveyor.hosting.target import Target
from conveyor.observability import metrics
from conveyor.pipeline.analysis import Metric, Provider, Template
from conveyor.scheduler.service import Scheduler
from conveyor.storage import analysis, names
from conveyor.storage.database import Database, Session
from conveyor.storage.deployment_records import (
    AnalysisRunRecord,
    EnvironmentRecord,
    InstanceRecord,
)
from conveyor.vcs import GitMirror

log = logging.getLogger("conveyor.deploy.analysis")
MEASURE_TIMEOUT_S = 2.0
"""The longest one metric's measurement may take (the environment's lease is 3 s)."""


@dataclass
class _Live:
    """What this replica keeps of one running analysis between evaluations."""

    evaluation: Evaluation
    window_start: float
    """Wall clock: where the next measurement's window begins."""
    started: float
    """Wall clock: when the run started (its stored start)."""


class Analyses:
    """Judges the analyses of the environments one manager drives."""

    def __init__(
        self,
        context: DriverContext,
        providers: Mapping[Provider, MetricProvider],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.context = context
        self.providers = providers
        self.clock = clock
        """The wall clock of the analyses' windows and durations (the manager's: tests
        move it, so that an analysis sees the same traffic however loaded the machine)."""
        self._live: dict[uuid.UUID, _Live] = {}
        self.evaluated = 0

    async def close(self) -> None:
        """Release what the providers hold (HTTP connections)."""
        for provider in self.providers.values():
            await provider.close()

    async def judge(self, env_id: uuid.UUID, fence: int, driven: Driven, world: World) -> World:
        """Start, stop and evaluate the active deployment's analyses; the world with
        their phases for the planner."""
        plan = driven.plan_row
        if plan is None:
            return world
        due = {d.key: d for d in analyses_due(world)}
        stored = {run.key: run for run in driven.rows.analyses}
        judged = {key: _judged(run) for key, run in stored.items()}
        stale = [r for k, r in stored.items() if r.phase == analysis.RUNNING and k not in due]
        missing = [d for k, d in due.items() if k not in stored]
        if stale or missing:
            async with self.context.fenced(env_id, fence) as session:
                for run in stale:
                    await analysis.end(
                        session,
                        run.id,
                        AnalysisPhase.STOPPED.value,
                        "the deployment moved on before a verdict",
                        plan.requested_by,
                    )
                    judged[run.key] = Judged(AnalysisPhase.STOPPED, run.template)
                    self._live.pop(run.id, None)
                for d in missing:
                    strategy = records.strategy_of(plan.strategy)
                    stored[d.key] = await analysis.start(
                        session,
                        plan,
                        key=d.key,
                        template=d.template,
                        spec=strategy.templates.get(d.template, {}),
                        duration_s=d.seconds,
                        at=self.clock(),
                    )
                    judged[d.key] = Judged(AnalysisPhase.RUNNING, d.template)
        for key, d in due.items():
            run = stored[key]
            if run.phase == analysis.RUNNING:
                found = await self._evaluate(env_id, fence, driven, world, d, run)
                if found is not None:
                    judged[key] = found
        return replace(world, analyses=judged)

    async def _evaluate(
        self,
        env_id: uuid.UUID,
        fence: int,
        driven: Driven,
        world: World,
        due: Due,
        run: AnalysisRunRecord,
    ) -> Judged | None:
        """One evaluation of `run` when its interval has passed; its new standing."""
        live = self._live.get(run.id)
        now = self.clock().timestamp()
        if live is None:
            template = _template(run)
            if template is None:
                return await self._broken(env_id, fence, run, now)
            live = self._live[run.id] = _Live(
                Evaluation(template, compare=not due.promoted),
                window_start=now,
                started=as_utc(run.started_at).timestamp(),
            )
            return None
        template = live.evaluation.template
        if now - live.window_start < template.interval:
            return None
        targets = _targets(driven, world, due, self.context.target)
        measurements = await self._measure(template, targets, live.window_start, now)
        share = None if due.promoted or due.preview else world.env.canary_share / SHARE_SCALE
        judgements = live.evaluation.add(measurements, share)
        live.window_start = now
        return await self._record(env_id, fence, run, live, judgements, measurements, now, driven)

    async def _record(
        self,
        env_id: uuid.UUID,
        fence: int,
        run: AnalysisRunRecord,
        live: _Live,
        judgements: Sequence[Judgement],
        measurements: Sequence[Measurement],
        now: float,
        driven: Driven,
    ) -> Judged:
        template = live.evaluation.template
        limits = Limits(
            duration_s=run.duration_s if run.duration_s is not None else math.inf,
            failure_limit=template.failure_limit,
            inconclusive_limit=template.inconclusive_limit,
        )
        before = Analysis(limits, failures=dict(run.failures), extended=run.extended)
        after = before.observe(judgements, now - live.started)
        async with self.context.fenced(env_id, fence) as session:
            recorded = await analysis.record(
                session,
                run,
                elapsed_s=now - live.started,
                verdict=worst(judgements).value,
                judgements=[judgement_json(j) for j in judgements],
                measurements=[measurement_json(m) for m in measurements],
                phase=after.phase.value,
                failures=dict(after.failures),
                extended=after.extended,
                reason=after.reason,
            )
            if recorded and after.phase is not AnalysisPhase.RUNNING:
                await _count_verdict(session, driven.env, after.phase, now - live.started)
        # The row moves on in the database; this pass's copy follows it.
        moved = replace(
            run,
            evaluations=run.evaluations + 1,
            failures=dict(after.failures),
            extended=after.extended,
        )
        runs = driven.rows.analyses
        runs[:] = [moved if r.id == run.id else r for r in runs]
        self.evaluated += 1
        if after.phase is not AnalysisPhase.RUNNING:
            self._live.pop(run.id, None)
            log.info("analysis %s of %s: %s (%s)", run.key, env_id, after.phase, after.reason)
        return Judged(after.phase, run.template, after.reason)

    async def _broken(
        self, env_id: uuid.UUID, fence: int, run: AnalysisRunRecord, now: float
    ) -> Judged:
        """A run whose template the deployment does not carry cannot judge: it pauses
        the deployment as inconclusive at once, saying so."""
        reason = f"the deployment carries no analysis template {run.template!r}"
        async with self.context.fenced(env_id, fence) as session:
            await analysis.end(session, run.id, AnalysisPhase.INCONCLUSIVE.value, reason)
        return Judged(AnalysisPhase.INCONCLUSIVE, run.template, reason)

    async def _measure(
        self, template: Template, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        """Every metric at once, each within MEASURE_TIMEOUT_S: a slow provider costs its
        own metric a measurement, never the driver's pass (nor its lease)."""
        found = await asyncio.gather(
            *(self._one(metric, targets, start, end) for metric in template.metrics)
        )
        return [m for measured in found for m in measured]

    async def _one(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        provider = self.providers.get(metric.provider)
        if provider is None:
            detail = f"the {metric.provider.value} provider is not set up on this coordinator"
            return [Measurement(metric.name, Slot.CANARY, None, 0, start, end, detail)]
        try:
            async with asyncio.timeout(MEASURE_TIMEOUT_S):
                return await provider.measure(metric, targets, start, end)
        except TimeoutError:
            detail = (
                f"the {metric.provider.value} provider did not answer within "
                f"{MEASURE_TIMEOUT_S:g} s"
            )
            return [Measurement(metric.name, Slot.CANARY, None, 0, start, end, detail)]
        except Exception as exc:  # a provider's bug must not stop the driver
            log.exception("the %s provider failed on %s", metric.provider, metric.name)
            detail = f"the {metric.provider.value} provider failed: {type(exc).__name__}"
            return [Measurement(metric.name, Slot.CANARY, None, 0, start, end, detail)]


def default_providers(
    router: RequestSource,
    db: Database,
    *,
    prometheus_url: str | None = None,
    scheduler: Scheduler | None = None,
    mirror: Callable[[str], GitMirror] | None = None,
) -> dict[Provider, MetricProvider]:
    """The providers every coordinator has: the router's request log, the instances'
    processes, HTTP, Prometheus (at `prometheus_url`, or each metric's `address`), the
    alerts Alertmanager sent, the instances' logs, and (with a scheduler) jobs."""
    more: dict[Provider, MetricProvider] = {}
    if scheduler is not None and mirror is not None:
        more[Provider.JOB] = JobProvider(db, scheduler, mirror)
    return more | {
        Provider.ROUTER: RouterProvider(router),
        Provider.PROCESS: ProcessProvider(),
        Provider.HTTP: HttpProvider(),
        Provider.PROMETHEUS: PrometheusProvider(prometheus_url),
        Provider.ALERT: AlertProvider(db),
        Provider.LOGS: LogsProvider(),
    }


async def _count_verdict(
    session: Session, env: EnvironmentRecord, phase: AnalysisPhase, seconds: float
) -> None:
    team = await names.team(session, env.team_id)
    project = await names.project(session, env.project_id)
    metrics.analysis_verdicts.labels(team, project, env.name, phase.value).inc()
    if phase is AnalysisPhase.FAILED:
        metrics.analysis_time_to_detect.observe(max(seconds, 0.0))


def _judged(run: AnalysisRunRecord) -> Judged:
    return Judged(AnalysisPhase(run.phase), run.template, run.reason)


def _template(run: AnalysisRunRecord) -> Template | None:
    if not run.spec:
        return None
    return Template.model_validate(run.spec)


def _log(target: Target, instance: str) -> str | None:
    path = target.log_path(instance)
    return str(path) if path is not None else None


def _targets(driven: Driven, world: World, due: Due, target: Target) -> list[SlotTarget]:
    """The slots an analysis measures: after promotion the new revision alone (in the
    stable slot); before, the canary (or the preview) and the stable slot."""
    env = driven.env
    plan = driven.plan_row
    assert plan is not None
    route = records.route_key(env)
    since = as_utc(plan.started_at).timestamp() if plan.started_at else None
    if due.promoted:
        canary_side = env.stable_slot
        url = f"http://127.0.0.1:{env.port}"
    else:
        canary_side = target_slot(world)
        url = f"http://127.0.0.1:{env.preview_port}"
    out = [
        SlotTarget(
            Slot.CANARY,
            _instances(driven, canary_side, plan.digest, target),
            url=url,
            route=route,
            side=canary_side,
            environment=env.name,
            environment_id=str(env.id),
            since=since,
            preview=due.preview,
            deployment_id=str(plan.id),
            analysis=due.key,
        )
    ]
    if not due.promoted and env.digest is not None:
        out.append(
            SlotTarget(
                Slot.STABLE,
                _instances(driven, env.stable_slot, env.digest, target),
                url=f"http://127.0.0.1:{env.port}",
                route=route,
                side=env.stable_slot,
                environment=env.name,
                environment_id=str(env.id),
                since=since,
                deployment_id=str(plan.id),
                analysis=due.key,
            )
        )
    return out


def _instances(driven: Driven, slot: str, digest: str, target: Target) -> tuple[Instance, ...]:
    """The slot's instances that run: on this machine (by pid), or on a host (as its
    agent last reported them)."""
    out = []
    for row in driven.instances:
        if row.slot != slot or row.digest != digest:
            continue
        if InstanceState(row.state) not in (InstanceState.READY, InstanceState.STARTING):
            continue
        if row.host_id is not None:
            pid = int((row.observed or {}).get("pid") or 0)
            out.append(Instance(pid, row.port, reported=_reported(row)))
        elif row.pid:
            out.append(Instance(row.pid, row.port, _log(target, str(row.id))))
    return tuple(out)


def _reported(row: InstanceRecord) -> Reported:
    """What its agent last reported of it (a report of nothing, from the epoch, when
    there is none or its process does not run: no data, never this machine's pid)."""
    seen = row.observed or {}
    host = row.address or str(row.host_id)
    if row.observed_at is None or not seen.get("running"):
        return Reported(str(row.id), host, None, None, 0.0)
    rss, cpu = seen.get("rss"), seen.get("cpu_s")
    return Reported(
        instance=str(row.id),
        host=host,
        rss=float(rss) if rss is not None else None,
        cpu_s=float(cpu) if cpu is not None else None,
        at=as_utc(row.observed_at).timestamp(),
        log_lines=int(seen.get("log_lines") or 0),
        log_matches={str(k): int(v) for k, v in dict(seen.get("log_matches") or {}).items()},
    )
