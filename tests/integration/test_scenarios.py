"""Pipeline scenarios written as data: tests/scenarios/NN-name.yaml, each holding a
pipeline, an event and the expected outcome. Every scenario runs for real, through
`conveyor run` (LocalRun) and through the server's Scheduler with in-process runners, and
both must come out the same."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import func, select

from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import load_pipeline
from conveyor.pipeline.plan import Plan, compile_plan, job_from_json
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.protocol.runner import MAX_DETAIL, AttemptOutcome
from conveyor.runner.attempt import AttemptContext, RunInfo, RunOptions, run_attempt
from conveyor.runner.local import LocalRun
from conveyor.runner.shell import ShellExecutor
from conveyor.scheduler.service import Scheduler
from conveyor.storage.database import Database, database_url
from conveyor.storage.migrate import upgrade
from conveyor.storage.runs import derived_status
from conveyor.storage.tables import Job, JobAttempt, Project, RunnerRow, Team
from tests.conftest import RecordingObserver

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("[0-9][0-9]-*.yaml"))


def test_scenarios_exist():
    assert len(SCENARIOS) >= 10


def _event(spec: dict[str, Any] | None) -> Event:
    spec = spec or {}
    changed = spec.get("changed")
    return Event(
        kind=EventKind(spec.get("kind", "push")),
        ref=spec.get("ref", "refs/heads/main"),
        changed=tuple(changed) if changed is not None else None,
        message=spec.get("message", ""),
        target_branch=spec.get("target"),
    )


@dataclass
class ScenarioOutcome:
    """What a scenario's run came to, whichever path ran it."""

    status: str
    jobs: dict[str, str]
    attempts: dict[str, int]
    failure_class: dict[str, str | None]
    reasons: dict[str, str]
    """Why each job that did not run was skipped, parked or canceled."""


NOT_RUN = {"skipped", "manual", "canceled"}


def _local(plan: Plan, options: RunOptions) -> ScenarioOutcome:
    result = asyncio.run(LocalRun(plan, options, RecordingObserver()).execute())
    return ScenarioOutcome(
        status=result.status.value,
        jobs={r.job.name: r.status.value for r in result.jobs},
        attempts={r.job.name: len(r.attempts) for r in result.jobs},
        failure_class={
            r.job.name: r.last.failure_class.value if r.last and r.last.failure_class else None
            for r in result.jobs
        },
        reasons={r.job.name: r.reason for r in result.jobs if r.status.value in NOT_RUN},
    )


async def _on_scheduler(plan: Plan, options: RunOptions, parallel: int) -> ScenarioOutcome:
    """The same plan through the server's Scheduler on SQLite, with `parallel` in-process
    runners that claim, run the attempt with the runner's own code, and finish."""
    db = Database(database_url(options.data_dir / "db"))
    await upgrade(db)
    try:
        scheduler = Scheduler(db)
        async with db.transaction() as session:
            team = Team(name=plan.team)
            session.add(team)
            await session.flush()
            project = Project(team_id=team.id, name=plan.service, repo_url="file:///scenario")
            runner = RunnerRow(name="in-process", token_hash="scenario")
            session.add_all([project, runner])
        run_id = (await scheduler.start_run(project, plan, pipeline="conveyor.yml")).run_id
        run_dir = options.data_dir / "runs" / str(run_id)
        context = AttemptContext.create(RunInfo.of_plan(plan, str(run_id)), options, run_dir)
        executor = ShellExecutor(kill_grace_s=options.kill_grace_s)
        busy = [0]

        async def worker() -> None:
            while True:
                assignment = await scheduler.claim(runner)
                if assignment is None:
                    if busy[0] == 0:
                        return
                    await scheduler.wait(runner, 0.05)
                    continue
                busy[0] += 1
                job = job_from_json(assignment.spec)
                result = await run_attempt(
                    context, job, assignment.attempt, executor, asyncio.Event(), RecordingObserver()
                )
                await scheduler.finish(
                    assignment.job_id,
                    assignment.fence,
                    AttemptOutcome(
                        status=result.status,
                        exit_code=result.exit_code,
                        failure_class=result.failure_class,
                        detail=result.detail[:MAX_DETAIL],
                    ),
                )
                busy[0] -= 1

        await asyncio.gather(*(worker() for _ in range(max(1, parallel))))
        async with db.transaction() as session:
            rows = (await session.execute(select(Job).where(Job.run_id == run_id))).scalars()
            jobs = list(rows)
            counts = dict(
                (
                    await session.execute(
                        select(JobAttempt.job_id, func.count()).group_by(JobAttempt.job_id)
                    )
                ).all()
            )
            status = await derived_status(session, run_id)
        return ScenarioOutcome(
            status=status.value,
            jobs={j.name: j.status for j in jobs},
            attempts={j.name: counts.get(j.id, 0) for j in jobs},
            failure_class={j.name: j.failure_class for j in jobs},
            reasons={j.name: j.reason for j in jobs if j.status in NOT_RUN},
        )
    finally:
        await db.dispose()


def _check(outcome: ScenarioOutcome, expect: dict[str, Any]) -> None:
    assert outcome.status == expect["status"]
    assert outcome.jobs == expect["jobs"]
    for name, count in expect.get("attempts", {}).items():
        assert outcome.attempts[name] == count
    for name, cls in expect.get("failure_class", {}).items():
        assert outcome.failure_class[name] == cls


def _prepare(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    scenario = YAML(typ="safe").load(path.read_text())
    (tmp_path / "conveyor.yml").write_text(scenario["pipeline"])
    monkeypatch.chdir(tmp_path)
    return scenario, scenario["expect"]


def _plan(scenario: dict[str, Any]) -> Plan:
    return compile_plan(load_pipeline(Path("conveyor.yml")).spec, _event(scenario.get("event")))


def _options(tmp_path: Path, scenario: dict[str, Any]) -> RunOptions:
    return RunOptions(
        source_dir=tmp_path,
        data_dir=tmp_path / ".conveyor",
        parallel=_parallel(scenario),
        kill_grace_s=0.5,
    )


def _parallel(scenario: dict[str, Any]) -> int:
    return int(scenario.get("run", {}).get("parallel", 2))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    scenario, expect = _prepare(path, tmp_path, monkeypatch)
    if "errors" in expect:
        with pytest.raises(PipelineInvalid) as caught:
            load_pipeline(Path("conveyor.yml"))
        assert [str(e) for e in caught.value.errors] == expect["errors"]
        return
    plan = _plan(scenario)
    _check(_local(plan, _options(tmp_path, scenario)), expect)
    if "excluded" in expect:
        assert [e.name for e in plan.excluded] == expect["excluded"]
    if "reasons_include" in expect:
        assert any(expect["reasons_include"] in r for r in plan.trigger.reasons)


RUNNABLE = [p for p in SCENARIOS if "errors" not in YAML(typ="safe").load(p.read_text())["expect"]]


@pytest.mark.parametrize("path", RUNNABLE, ids=[p.stem for p in RUNNABLE])
def test_scenario_on_the_scheduler_matches_the_local_run(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`conveyor run` and the server's scheduler share pipeline.progress and the retry
    rule: every scenario comes out the same on both, down to why a job did not run."""
    scenario, expect = _prepare(path, tmp_path, monkeypatch)
    plan = _plan(scenario)
    if not plan.triggered:  # the coordinator starts no run for it (intake, trigger)
        assert expect["status"] == "skipped" and expect["jobs"] == {}
        return
    local = _local(plan, _options(tmp_path / "local", scenario))
    served = asyncio.run(
        _on_scheduler(plan, _options(tmp_path / "served", scenario), _parallel(scenario))
    )
    _check(served, expect)
    assert served.reasons == local.reasons
    assert served.attempts == local.attempts
