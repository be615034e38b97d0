"""Checks across keys that a schema cannot express: `needs` and `stage` references, and
cycles in the job graph.

They read the raw loaded data, defensively, so that they run (and report) even when the
schema found other errors elsewhere: a user sees every error of a file in one pass.
"""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conveyor.pipeline.schema import DEFAULT_STAGE, DEFAULT_STAGES
from conveyor.pipeline.yamlpos import PathKey


@dataclass(frozen=True, slots=True)
class Finding:
    """A lint problem and the path of the value it points at."""

    path: PathKey
    message: str
    at_key: bool = False


def suggest(word: str, candidates: list[str]) -> str:
    """A ` (did you mean 'x'?)` suffix, or an empty string."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _jobs(data: Any) -> dict[str, Any]:
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, dict):
        return {}
    return {k: v for k, v in jobs.items() if isinstance(k, str) and not k.startswith(".")}


def _raw_needs(job: Any) -> Iterator[tuple[int | None, str, bool]]:
    """Yield (index in the list or None, needed job name, optional) from a raw `needs`."""
    needs = job.get("needs") if isinstance(job, dict) else None
    if isinstance(needs, str):
        yield None, needs, False
        return
    if not isinstance(needs, list):
        return
    for i, item in enumerate(needs):
        if isinstance(item, str):
            yield i, item, False
        elif isinstance(item, dict) and isinstance(item.get("job"), str):
            yield i, item["job"], bool(item.get("optional", False))


def _need_path(name: str, index: int | None) -> PathKey:
    base: PathKey = ("jobs", name, "needs")
    return base if index is None else (*base, index)


def lint(data: Any) -> list[Finding]:
    """Every cross-reference problem in the raw data."""
    jobs = _jobs(data)
    findings = list(_check_work(jobs))
    findings += _check_stages(data, jobs)
    findings += _check_needs(jobs)
    findings += _check_cycles(jobs)
    findings += _check_analysis(data, jobs)
    return findings


def _templates(data: Any) -> dict[str, Any]:
    section = data.get("analysis") if isinstance(data, dict) else None
    templates = section.get("templates") if isinstance(section, dict) else None
    return templates if isinstance(templates, dict) else {}


def _analysis_references(name: str, job: Any) -> Iterator[tuple[PathKey, Any]]:
    """(path, template name) of every analysis a job's `deploy` names."""
    deploy = job.get("deploy") if isinstance(job, dict) else None
    if not isinstance(deploy, dict):
        return
    base: PathKey = ("jobs", name, "deploy")
    bake = deploy.get("bake")
    if isinstance(bake, dict) and "analysis" in bake:
        yield (*base, "bake", "analysis"), bake["analysis"]
    strategy = deploy.get("strategy")
    blue_green = strategy.get("blue-green") if isinstance(strategy, dict) else None
    before = blue_green.get("pre_promotion") if isinstance(blue_green, dict) else None
    if isinstance(before, dict) and "analysis" in before:
        path: PathKey = (*base, "strategy", "blue-green", "pre_promotion", "analysis")
        yield path, before["analysis"]
    canary = strategy.get("canary") if isinstance(strategy, dict) else None
    if not isinstance(canary, dict):
        return
    where: PathKey = (*base, "strategy", "canary")
    if "background_analysis" in canary:
        yield (*where, "background_analysis"), canary["background_analysis"]
    steps = canary.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict) and isinstance(step.get("analysis"), str):
            yield (*where, "steps", i, "analysis"), step["analysis"]


def _check_analysis(data: Any, jobs: dict[str, Any]) -> Iterator[Finding]:
    templates = _templates(data)
    names = [t for t in templates if isinstance(t, str)]
    for name, job in jobs.items():
        for path, wanted in _analysis_references(name, job):
            if isinstance(wanted, str) and wanted not in templates:
                yield Finding(
                    path,
                    f"no analysis template {wanted!r} in `analysis.templates`"
                    + (suggest(wanted, names) if names else " (there are none)"),
                )
    for template, body in templates.items():
        metrics = body.get("metrics") if isinstance(body, dict) else None
        for i, metric in enumerate(metrics if isinstance(metrics, list) else []):
            job = metric.get("job") if isinstance(metric, dict) else None
            if isinstance(job, str) and job not in jobs:
                yield Finding(
                    ("analysis", "templates", template, "metrics", i, "job"),
                    f"metric job {job!r} is not a job in this file" + suggest(job, list(jobs)),
                )


def _declared_stages(data: Any) -> list[str]:
    stages = data.get("stages") if isinstance(data, dict) else None
    if isinstance(stages, list):
        return [s for s in stages if isinstance(s, str)]
    return list(DEFAULT_STAGES)


def _check_stages(data: Any, jobs: dict[str, Any]) -> Iterator[Finding]:
    stages = _declared_stages(data)
    seen: set[str] = set()
    raw = data.get("stages") if isinstance(data, dict) else None
    for i, stage in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(stage, str):
            continue
        if stage in seen:
            yield Finding(("stages", i), f"stage {stage!r} is listed twice")
        seen.add(stage)
    for name, job in jobs.items():
        stage = job.get("stage", DEFAULT_STAGE) if isinstance(job, dict) else None
        if not isinstance(stage, str) or stage in stages:
            continue
        if "stage" not in job and isinstance(raw, list):
            yield Finding(
                ("jobs", name),
                f"job {name!r} has no `stage` and the default stage {DEFAULT_STAGE!r} is not "
                f"in `stages`",
                at_key=True,
            )
            continue
        yield Finding(
            ("jobs", name, "stage"),
            f"stage {stage!r} is not in `stages` ({', '.join(stages)})" + suggest(stage, stages),
        )


def _check_work(jobs: dict[str, Any]) -> Iterator[Finding]:
    for name, job in jobs.items():
        if isinstance(job, dict) and not job.get("script") and "deploy" not in job:
            yield Finding(("jobs", name), "a job needs a `script` (or a `deploy`)", at_key=True)


def _check_needs(jobs: dict[str, Any]) -> Iterator[Finding]:
    names = list(jobs)
    for name, job in jobs.items():
        seen: set[str] = set()
        for index, needed, optional in _raw_needs(job):
            path = _need_path(name, index)
            if needed == name:
                yield Finding(path, f"job {name!r} needs itself")
            elif needed in seen:
                yield Finding(path, f"job {name!r} lists {needed!r} in `needs` twice")
            elif needed not in jobs and not optional:
                yield Finding(
                    path,
                    f"job {name!r} needs {needed!r}, which is not a job in this file"
                    + suggest(needed, names),
                )
            seen.add(needed)


def _check_cycles(jobs: dict[str, Any]) -> Iterator[Finding]:
    graph = {
        name: {n for _, n, _ in _raw_needs(job) if n in jobs and n != name}
        for name, job in jobs.items()
    }
    reported: set[frozenset[str]] = set()
    while True:
        try:
            graphlib.TopologicalSorter(graph).prepare()
            return
        except graphlib.CycleError as exc:
            cycle: list[str] = list(exc.args[1])
            members = frozenset(cycle)
            if members in reported:  # pragma: no cover - each pass removes an edge
                return
            reported.add(members)
            # CycleError lists the cycle as [a, b, …, a], where each node needs the next.
            pretty = " → ".join(reversed(cycle))
            first = cycle[-1]
            yield Finding(("jobs", first, "needs"), f"`needs` form a cycle: {pretty}")
            graph[cycle[1]].discard(cycle[0])
