"""Compile a checked pipeline and an event into a plan: the jobs that will exist in the run,
with their matrix expanded, their `needs` resolved to a DAG, and the reasons for every job
that was left out. Runners execute only plans."""

from __future__ import annotations

import graphlib
import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import TypeAdapter

from conveyor.pipeline.deploy import Deploy
from conveyor.pipeline.schema import (
    DEFAULT_STAGE,
    DEFAULT_TIMEOUT_S,
    Artifacts,
    Cache,
    Concurrency,
    Gates,
    Job,
    PipelineSpec,
    Reports,
    Retry,
    When,
    required_team,
)
from conveyor.pipeline.triggers import Event, Match, job_condition, pipeline_trigger


@dataclass(frozen=True)
class PlannedJob:
    """One job of the run, after matrix expansion."""

    name: str
    base: str
    stage: str
    needs: tuple[str, ...]
    artifacts_from: tuple[str, ...]
    script: tuple[str, ...]
    after_script: tuple[str, ...]
    env: dict[str, str]
    matrix: dict[str, str]
    timeout_s: float
    retry: Retry
    when: When
    allow_failure: bool
    interruptible: bool
    required_for_merge: bool
    cache: Cache | None = None
    artifacts: Artifacts | None = None
    reports: Reports | None = None
    gates: Gates | None = None
    concurrency: Concurrency | None = None
    deploy: Deploy | None = None
    labels: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    checkout: bool = True
    """False: an empty workspace, no repository checkout."""
    required_by: str | None = None
    """The team whose required check it is (`required_for_merge`), or None."""


@dataclass(frozen=True)
class ExcludedJob:
    name: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What a run will do. `jobs` is in a topological order of `needs`."""

    service: str
    team: str
    event: Event
    trigger: Match
    jobs: tuple[PlannedJob, ...] = ()
    excluded: tuple[ExcludedJob, ...] = ()
    ancestors: dict[str, frozenset[str]] = field(default_factory=dict)
    required_teams: tuple[str, ...] = ()
    """The teams whose required jobs a merge needs (PipelineSpec.required_teams)."""

    @property
    def triggered(self) -> bool:
        return self.trigger.included and bool(self.jobs)

    def job(self, name: str) -> PlannedJob:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)


def matrix_combinations(job: Job) -> list[dict[str, str]]:
    """The matrix cells of a job, in file order; one empty cell when there is no matrix."""
    if not job.matrix:
        return [{}]
    cells: list[dict[str, str]] = []
    for entry in job.matrix:
        names = list(entry)
        for values in itertools.product(*(entry[n] for n in names)):
            cells.append(dict(zip(names, (str(v) for v in values), strict=True)))
    return cells


def instance_name(base: str, cell: dict[str, str]) -> str:
    """GitLab's naming of matrix jobs: `test: [3.11, postgres]`."""
    return f"{base}: [{', '.join(cell.values())}]" if cell else base


def compile_plan(spec: PipelineSpec, event: Event) -> Plan:
    """Decide which jobs run for `event`, and wire them into a DAG."""
    trigger = pipeline_trigger(spec, event)
    plan = Plan(
        service=spec.service,
        team=spec.team,
        event=event,
        trigger=trigger,
        required_teams=spec.required_teams,
    )
    if not trigger.included:
        return plan
    return _Compiler(spec, event, trigger).compile()


def plan_single(
    spec: PipelineSpec, event: Event, name: str, env: dict[str, str], reason: str
) -> Plan:
    """A run of job `name` alone, whatever `on`, `if`, `needs` and `when: manual` say,
    with `env` added: the smoke test an analysis runs against a canary (a matrix job
    runs its first cell). Such a job is usually `when: manual` in the pipeline, so that
    its ordinary runs do not start it."""
    job = spec.jobs[name]
    trigger = Match(True, (reason,))
    compiler = _Compiler(spec, event, trigger)
    cell = matrix_combinations(job)[0]
    planned = compiler._planned(name, name, job, cell, (), (), (reason,))
    planned = replace(planned, env={**planned.env, **env}, when=When.ON_SUCCESS)
    return Plan(
        service=spec.service,
        team=spec.team,
        event=event,
        trigger=trigger,
        jobs=(planned,),
        ancestors={name: frozenset()},
    )


def _stage_node(index: int) -> str:
    return f"\0stage-{index}"


class _Compiler:
    def __init__(self, spec: PipelineSpec, event: Event, trigger: Match) -> None:
        self.spec = spec
        self.event = event
        self.trigger = trigger
        self.stage_index = {
            name: spec.stage_names.index(job.stage or DEFAULT_STAGE)
            for name, job in spec.jobs.items()
        }
        self.instances: dict[str, list[str]] = {}
        self.excluded: dict[str, tuple[str, ...]] = {}
        self.jobs: dict[str, PlannedJob] = {}
        self.stage_needs: dict[int, tuple[str, ...]] = {}

    def compile(self) -> Plan:
        for base in self._base_order():
            self._plan_base(base, self.spec.jobs[base])
        # Jobs were planned in a topological order of their bases, so `self.jobs` is in
        # a topological order too. Jobs of one stage share one needs tuple: their
        # ancestors are computed once.
        ancestors: dict[str, frozenset[str]] = {}
        shared: dict[tuple[str, ...], frozenset[str]] = {}
        for name, job in self.jobs.items():
            if job.needs not in shared:
                shared[job.needs] = frozenset(job.needs).union(*(ancestors[n] for n in job.needs))
            ancestors[name] = shared[job.needs]
        order = list(self.jobs)
        return Plan(
            service=self.spec.service,
            team=self.spec.team,
            event=self.event,
            trigger=self.trigger,
            jobs=tuple(self.jobs[n] for n in order),
            excluded=tuple(ExcludedJob(n, r) for n, r in self.excluded.items()),
            ancestors=ancestors,
            required_teams=self.spec.required_teams,
        )

    def _base_order(self) -> list[str]:
        """Base jobs ordered so that every job comes after what it needs: its explicit
        needs, or every job of an earlier stage. A node per stage stands for "all of this
        stage", which keeps the graph linear in size instead of quadratic."""
        graph: dict[str, set[str]] = {}
        for name, job in self.spec.jobs.items():
            stage = self.stage_index[name]
            graph.setdefault(_stage_node(stage), set()).add(name)
            if job.needs is not None:
                graph[name] = {n.job for n in job.needs if n.job in self.spec.jobs}
            else:
                graph[name] = {_stage_node(i) for i in range(stage)}
        position = {name: i for i, name in enumerate(self.spec.jobs)}
        sorter = graphlib.TopologicalSorter(graph)
        sorter.prepare()
        order: list[str] = []
        while sorter.is_active():
            ready = sorter.get_ready()
            sorter.done(*ready)
            order += sorted((n for n in ready if n in position), key=position.__getitem__)
        return order

    def _plan_base(self, base: str, job: Job) -> None:
        condition = job_condition(job.if_, self.event)
        if not condition.included:
            self.excluded[base] = condition.reasons
            return
        needs, artifacts_from, reasons = self._resolve_needs(base, job)
        if needs is None:
            self.excluded[base] = reasons
            return
        for cell in matrix_combinations(job):
            name = instance_name(base, cell)
            self.jobs[name] = self._planned(
                name, base, job, cell, needs, artifacts_from, condition.reasons + reasons
            )
        self.instances[base] = [instance_name(base, c) for c in matrix_combinations(job)]

    def _resolve_needs(
        self, base: str, job: Job
    ) -> tuple[tuple[str, ...] | None, tuple[str, ...], tuple[str, ...]]:
        """Expanded needs and the jobs to take artifacts from; None needs = excluded."""
        if job.needs is None:
            names = self._stage_needs(self.stage_index[base])
            return names, names, (f"stage {job.stage or DEFAULT_STAGE!r} (after earlier stages)",)
        needs: list[str] = []
        artifacts_from: list[str] = []
        reasons: list[str] = []
        for need in job.needs:
            if need.job not in self.instances:
                if need.optional:
                    reasons.append(f"optional need {need.job!r} is not in this run")
                    continue
                return None, (), (f"needs {need.job!r}, which is not in this run",)
            expanded = self.instances[need.job]
            needs += expanded
            if need.artifacts:
                artifacts_from += expanded
        return tuple(needs), tuple(artifacts_from), tuple(reasons)

    def _stage_needs(self, stage: int) -> tuple[str, ...]:
        """Every planned job of the stages before `stage`, in file order. The base order
        plans all of them before any job of `stage`, so the answer is cached."""
        if stage not in self.stage_needs:
            earlier = [
                b for b in self.spec.jobs if b in self.instances and self.stage_index[b] < stage
            ]
            self.stage_needs[stage] = tuple(n for b in earlier for n in self.instances[b])
        return self.stage_needs[stage]

    def _planned(
        self,
        name: str,
        base: str,
        job: Job,
        cell: dict[str, str],
        needs: tuple[str, ...],
        artifacts_from: tuple[str, ...],
        reasons: tuple[str, ...],
    ) -> PlannedJob:
        defaults = self.spec.defaults
        before = job.before_script if job.before_script is not None else defaults.before_script
        after = job.after_script if job.after_script is not None else defaults.after_script
        interruptible = (
            job.interruptible
            if job.interruptible is not None
            else (
                defaults.interruptible if defaults.interruptible is not None else job.deploy is None
            )
        )
        return PlannedJob(
            name=name,
            base=base,
            stage=job.stage or DEFAULT_STAGE,
            needs=needs,
            artifacts_from=artifacts_from,
            script=tuple((before or []) + (job.script or [])),
            after_script=tuple(after or []),
            env={**self.spec.env, **defaults.env, **job.env, **cell},
            matrix=cell,
            timeout_s=job.timeout or defaults.timeout or DEFAULT_TIMEOUT_S,
            retry=job.retry or defaults.retry or Retry(),
            when=job.when,
            allow_failure=job.allow_failure,
            interruptible=interruptible,
            required_for_merge=bool(job.required_for_merge),
            required_by=required_team(job.required_for_merge, self.spec.team),
            cache=job.cache,
            artifacts=job.artifacts,
            reports=job.reports,
            gates=job.gates,
            concurrency=job.concurrency,
            deploy=job.deploy,
            labels=tuple(sorted(set(job.labels or defaults.labels or []))),
            reasons=reasons,
            checkout=next((c for c in (job.checkout, defaults.checkout) if c is not None), True),
        )


_PLANNED_JOB = TypeAdapter(PlannedJob)


def job_to_json(job: PlannedJob) -> dict[str, Any]:
    """A planned job as JSON-safe data (stored with the job, sent to runners)."""
    data: dict[str, Any] = _PLANNED_JOB.dump_python(
        job, mode="json", by_alias=True, exclude_none=True
    )
    return data


def job_from_json(data: dict[str, Any]) -> PlannedJob:
    """The inverse of job_to_json."""
    return _PLANNED_JOB.validate_python(data)
