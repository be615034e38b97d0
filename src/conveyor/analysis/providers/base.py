"""The contract of a metric provider (STYLE.md: one small interface per outside system,
as Argo Rollouts' metric/provider.go), and what every provider returns.

A provider is asked for one metric of one analysis, for each slot it can measure, over
a time window. It is called by the analysis loop of the environment's driver, once per
`interval`, from one task at a time per analysis; it may be called again for the same
window after a crash and must then answer the same way or with newer data (idempotent,
no side effects on the service).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from conveyor.domain.traffic import Served
from conveyor.pipeline.analysis import Metric


class Slot(StrEnum):
    CANARY = "canary"
    """The new revision (in a blue-green: its preview)."""
    STABLE = "stable"


@dataclass(frozen=True, slots=True)
class Reported:
    """What the agent of an instance's host last reported of its process."""

    instance: str
    """The instance's id."""
    host: str
    rss: float | None
    """Bytes, its process and their children."""
    cpu_s: float | None
    """CPU time used so far, seconds."""
    at: float
    """When the coordinator received the report (wall clock)."""
    log_lines: int = 0
    """Output lines its process wrote so far (this incarnation)."""
    log_matches: Mapping[str, int] = field(default_factory=dict)
    """Per pattern the agent was asked to count: the lines that matched so far."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One running instance of a slot, as the target runs it (on this machine), or as
    its host's agent reported it (`reported`)."""

    pid: int
    port: int
    log: str | None = None
    """Where the target keeps its output (a file), if it does."""
    reported: Reported | None = None


def hosts_of(instances: Sequence[Instance]) -> frozenset[str]:
    """The hosts that these instances run on, as their agents reported them."""
    return frozenset(i.reported.host for i in instances if i.reported is not None)


@dataclass(frozen=True, slots=True)
class SlotTarget:
    """What a provider may measure of one slot."""

    slot: Slot
    instances: tuple[Instance, ...] = ()
    url: str | None = None
    """Where the slot answers (the canary: its preview URL)."""
    route: str | None = None
    """The environment's name in the traffic router (deploy.records.route_key)."""
    side: str | None = None
    """Which of the router's two backends (`a`, `b`) serves the slot now."""
    environment: str | None = None
    """The environment's name."""
    environment_id: str | None = None
    """The environment's id: where alerts about it are kept."""
    since: float | None = None
    """When the deployment began (wall clock): what happened before is not the new
    revision's doing (an alert that was already firing, older log lines)."""
    preview: bool = False
    """Judge the requests that came through the preview URL (a blue-green preview that
    takes no traffic yet), not the environment's URL."""
    deployment_id: str | None = None
    analysis: str | None = None
    """The analysis run measured (its key: step-1, background, bake): a job runs once
    per run."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One value of one metric for one slot over [start, end] (monotonic seconds)."""

    metric: str
    slot: Slot
    value: float | None
    """None: nothing to measure (no instance, no answer)."""
    samples: int
    """How many observations the value stands on (requests, instances, 1 for a gauge)."""
    start: float
    end: float
    detail: str = ""
    parts: dict[str, float] = field(default_factory=dict)
    """Per instance, where a provider measures several."""
    failures: int = 0
    """Of `samples`, how many failed (an error rate's failed requests)."""
    latencies_ms: tuple[float, ...] = ()
    """Each request's time, for a latency quantile judged over the whole analysis."""
    hosts: frozenset[str] = frozenset()
    """The fleet's hosts whose agents' reports it stands on (none: this machine's)."""
    routers: frozenset[str] = frozenset()
    """The router hosts whose request summaries it stands on (none: the coordinator's
    own HAProxy)."""


class RequestSource(Protocol):
    """The traffic router's per-request record (HAProxy's request log), read by the
    `router` provider."""

    async def served(self, route: str, side: str, start: float, end: float) -> list[Served]:
        """The requests a route's backend `side` answered that were reported within
        [start, end) (wall clock): what was collected already (it never waits for more)."""
        ...


class MetricProvider(Protocol):
    """Measures a metric for the slots of a rollout."""

    async def measure(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        """One measurement per target, for the window [start, end]. Never raises for the
        service's own failures (a dead instance, no answer): that is a measurement with
        `value` None and a `detail`, which the judge counts as no data."""
        ...

    async def close(self) -> None:
        """Release what it holds (connections), when its coordinator stops. Idempotent."""
        ...
