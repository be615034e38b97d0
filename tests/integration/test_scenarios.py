"""Pipeline scenarios written as data: tests/scenarios/NN-name.yaml, each holding a
pipeline, an event and the expected outcome. Every scenario runs for real."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import load_pipeline
from conveyor.pipeline.plan import compile_plan
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.runner.attempt import RunOptions
from conveyor.runner.local import LocalRun
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


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    scenario = YAML(typ="safe").load(path.read_text())
    expect = scenario["expect"]
    (tmp_path / "conveyor.yml").write_text(scenario["pipeline"])
    monkeypatch.chdir(tmp_path)
    if "errors" in expect:
        with pytest.raises(PipelineInvalid) as caught:
            load_pipeline(Path("conveyor.yml"))
        assert [str(e) for e in caught.value.errors] == expect["errors"]
        return
    plan = compile_plan(load_pipeline(Path("conveyor.yml")).spec, _event(scenario.get("event")))
    options = RunOptions(
        source_dir=tmp_path,
        data_dir=tmp_path / ".conveyor",
        parallel=scenario.get("run", {}).get("parallel", 2),
        kill_grace_s=0.5,
    )
    result = asyncio.run(LocalRun(plan, options, RecordingObserver()).execute())
    assert result.status.value == expect["status"]
    assert {r.job.name: r.status.value for r in result.jobs} == expect["jobs"]
    for name, count in expect.get("attempts", {}).items():
        assert len(next(r for r in result.jobs if r.job.name == name).attempts) == count
    for name, cls in expect.get("failure_class", {}).items():
        record = next(r for r in result.jobs if r.job.name == name)
        assert record.last is not None and record.last.failure_class == cls
    if "excluded" in expect:
        assert [e.name for e in plan.excluded] == expect["excluded"]
    if "reasons_include" in expect:
        assert any(expect["reasons_include"] in r for r in plan.trigger.reasons)
