"""Shared test helpers: build pipelines from text, record what a run reports."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import pytest

from conveyor.domain.status import JobStatus
from conveyor.pipeline.loader import LoadedPipeline, parse_pipeline
from conveyor.pipeline.plan import Plan, compile_plan
from conveyor.pipeline.triggers import Event, EventKind


def pipeline_text(body: str, *, service: str = "svc", team: str = "team") -> str:
    """A pipeline file: the header plus `body` (dedented)."""
    return f"version: 1\nservice: {service}\nteam: {team}\n" + textwrap.dedent(body)


def load(body: str) -> LoadedPipeline:
    return parse_pipeline(pipeline_text(body), "conveyor.yml")


def event(
    kind: EventKind = EventKind.PUSH,
    *,
    ref: str = "refs/heads/main",
    changed: tuple[str, ...] | None = None,
    message: str = "",
    target: str | None = None,
) -> Event:
    return Event(kind=kind, ref=ref, changed=changed, message=message, target_branch=target)


def plan_for(body: str, ev: Event | None = None) -> Plan:
    return compile_plan(load(body).spec, ev or event())


@dataclass
class RecordingObserver:
    """Keeps every log line and status change, in order."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    statuses: list[tuple[str, JobStatus, str]] = field(default_factory=list)

    def job_log(self, job: str, line: str) -> None:
        self.lines.append((job, line))

    def job_status(self, job: str, status: JobStatus, detail: str) -> None:
        self.statuses.append((job, status, detail))

    def output(self, job: str) -> list[str]:
        return [line for name, line in self.lines if name == job]


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()
