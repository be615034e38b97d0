"""The `analysis` section of `conveyor.yml`: named templates of metrics that judge a
rollout (docs/analysis.md), referenced by canary steps, `background_analysis` and `bake`.

    analysis:
      templates:
        http-health:
          interval: 1s
          min_samples: 200
          metrics:
            - {name: error-rate, provider: router, max: 1%, compare: stable, max_ratio: 1.5}
            - {name: p99, provider: router, quantile: 0.99, max: 300ms}
            - {name: rss, provider: process, measure: rss, max: 512MiB}

Limits carry their unit (`1%`, `0.5pp`, `300ms`, `512MiB`) and are checked against the
kind of metric, so `max: 300ms` on an error rate is an error at its line and column.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.parser import parse as jsonpath
from pydantic import BeforeValidator, Field, field_validator, model_validator

from conveyor.pipeline.durations import parse_duration
from conveyor.pipeline.fields import Duration, Model, Name
from conveyor.pipeline.units import SIZE_UNITS


class Provider(StrEnum):
    ROUTER = "router"
    """Per-request status and latency of each slot, from HAProxy (the default)."""
    PROMETHEUS = "prometheus"
    HTTP = "http"
    JOB = "job"
    PROCESS = "process"
    LOGS = "logs"
    ALERT = "alert"
    """An Alertmanager webhook naming the service and environment fails at once."""


class Compare(StrEnum):
    STABLE = "stable"


class Unit(StrEnum):
    FRACTION = "%"
    POINTS = "pp"
    SECONDS = "s"
    BYTES = "B"
    NUMBER = ""


_NUMBER = r"(\d+(?:\.\d+)?)"


def parse_limit(value: object) -> tuple[float, Unit]:
    """`1%` → (0.01, %), `0.5pp` → (0.005, pp), `300ms` → (0.3, s), `512MiB` → (bytes,
    B), a bare number → (it, no unit). ValueError with a readable message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number or a value with a unit, got {value!r}")
    if isinstance(value, int | float):
        return float(value), Unit.NUMBER
    if not isinstance(value, str):
        raise ValueError(f"expected a number or a value with a unit, got {value!r}")
    text = value.strip()
    if found := re.fullmatch(_NUMBER + r"\s*%", text):
        return float(found[1]) / 100, Unit.FRACTION
    if found := re.fullmatch(_NUMBER + r"\s*pp", text):
        return float(found[1]) / 100, Unit.POINTS
    if found := re.fullmatch(_NUMBER + r"\s*(" + "|".join(SIZE_UNITS) + ")", text):
        return float(found[1]) * SIZE_UNITS[found[2]], Unit.BYTES
    try:
        return parse_duration(text), Unit.SECONDS
    except ValueError:
        pass
    raise ValueError(
        f"expected a number, a percentage ('1%'), percentage points ('0.5pp'), a duration "
        f"('300ms') or a size ('512MiB'), got {value!r}"
    )


def _limit(value: Any) -> Any:
    """A limit as written, or as stored: `[0.01, "%"]` (a deployment keeps its templates
    parsed, as model_dump wrote them)."""
    if value is None:
        return None
    if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[1], str):
        number, unit = value
        if isinstance(number, int | float) and not isinstance(number, bool):
            return float(number), Unit(unit)
    return parse_limit(value)


Limit = Annotated[
    tuple[float, Unit] | None,
    BeforeValidator(_limit, json_schema_input_type=str | float | None),
]


class Metric(Model):
    """One measurement and the conditions it must meet."""

    name: Name
    provider: Provider = Provider.ROUTER
    quantile: float | None = Field(None, gt=0, lt=1)
    """A latency quantile (router): 0.99 for p99. Without it, a router metric is the
    error rate."""
    max: Limit = None
    min: Limit = None
    compare: Compare | None = None
    max_ratio: float | None = Field(None, gt=0)
    max_increase: Limit = None
    """How far above the stable slot's error rate the canary's may be (`0.5pp`)."""
    query: str | None = Field(None, min_length=1)
    """prometheus: PromQL; `{{ canary }}` and `{{ stable }}` name the slot's instances."""
    address: str | None = Field(None, pattern=r"^https?://")
    """prometheus: the server (default: the coordinator's CONVEYOR_PROMETHEUS_URL)."""
    url: str | None = Field(None, pattern=r"^(https?://|\{\{ preview \}\})")
    """http: the URL to GET (`{{ preview }}` is the canary's preview URL)."""
    json_path: str | None = None
    """http: where the value is in the JSON answer (`$.status.errors`)."""
    job: str | None = None
    """job: the pipeline job that tests the canary (its exit status is the value)."""
    measure: str | None = Field(None, pattern="^(cpu|rss|requests)$")
    """process: `cpu` (share of one core) or `rss`; router: `requests`, the canary's
    requests per second (a router metric is otherwise its error rate, or a quantile)."""
    pattern: str | None = None
    """logs: a regular expression that marks an error line."""

    @field_validator("json_path")
    @classmethod
    def _json_path(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                jsonpath(value)
            except JSONPathError as exc:
                raise ValueError(f"not a JSONPath: {exc}") from exc
        return value

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Metric:
        _needs_fields(self)
        if self.provider is not Provider.ALERT and not any(
            (self.max, self.min, self.max_ratio, self.max_increase)
        ):
            raise ValueError(f"metric {self.name!r} has no condition (max, min, max_ratio…)")
        if (self.max_ratio is not None or self.max_increase is not None) and self.compare is None:
            raise ValueError(
                "max_ratio and max_increase compare with a slot: add `compare: stable`"
            )
        if self.compare is not None and self.provider is not Provider.ROUTER:
            raise ValueError("`compare: stable` is for router metrics (both slots are measured)")
        for field, limit in (("max", self.max), ("min", self.min)):
            if limit is not None and limit[1] not in _units(self):
                raise ValueError(f"{field}: {_unit_hint(self)}")
        if self.max_increase is not None and (
            self.quantile is not None or self.max_increase[1] is not Unit.POINTS
        ):
            raise ValueError("max_increase is for error rates, in percentage points ('0.5pp')")
        return self

    @property
    def is_error_rate(self) -> bool:
        return self.provider is Provider.ROUTER and self.quantile is None and self.measure is None

    @property
    def is_latency(self) -> bool:
        return self.provider is Provider.ROUTER and self.quantile is not None


_REQUIRED = {
    Provider.PROMETHEUS: "query",
    Provider.HTTP: "url",
    Provider.JOB: "job",
    Provider.PROCESS: "measure",
    Provider.LOGS: "pattern",
}


def _needs_fields(metric: Metric) -> None:
    required = _REQUIRED.get(metric.provider)
    if required is not None and getattr(metric, required) is None:
        raise ValueError(f"a {metric.provider} metric needs `{required}`")
    if metric.quantile is not None and metric.provider is not Provider.ROUTER:
        raise ValueError("`quantile` is for router metrics (per-request latency)")
    wanted = {Provider.ROUTER: ("requests",), Provider.PROCESS: ("cpu", "rss")}
    if metric.measure is not None and metric.measure not in wanted.get(metric.provider, ()):
        raise ValueError(
            f"`measure: {metric.measure}` is not for {metric.provider} metrics "
            "(router: requests; process: cpu, rss)"
        )
    if metric.measure == "requests" and (metric.quantile is not None or metric.compare):
        raise ValueError("`measure: requests` is the canary's request rate: `min`/`max` only")


def _units(metric: Metric) -> frozenset[Unit]:
    if metric.is_error_rate:
        return frozenset({Unit.FRACTION})
    if metric.is_latency:
        return frozenset({Unit.SECONDS})
    if metric.provider is Provider.PROCESS:
        return frozenset({Unit.BYTES} if metric.measure == "rss" else {Unit.FRACTION})
    return frozenset({Unit.NUMBER, Unit.FRACTION, Unit.SECONDS, Unit.BYTES})


def _unit_hint(metric: Metric) -> str:
    if metric.is_error_rate:
        return "an error rate's limit is a percentage, e.g. '1%'"
    if metric.is_latency:
        return "a latency's limit is a duration, e.g. '300ms'"
    if metric.measure == "rss":
        return "an RSS limit is a size, e.g. '512MiB'"
    return "a CPU limit is a percentage of one core, e.g. '80%'"


class Template(Model):
    """A named analysis: its metrics and how they are judged."""

    interval: Duration = 1.0
    """Between measurements."""
    warmup: Duration = 5.0
    """The canary's latency in its first seconds of traffic is not judged (caches and
    connection pools fill then); its errors always are."""
    min_samples: int = Field(200, ge=1)
    """Per slot, before any verdict that is not inconclusive."""
    failure_limit: int = Field(0, ge=0)
    inconclusive_limit: int = Field(30, ge=0)
    alpha: float = Field(0.001, gt=0, lt=0.5)
    """The false-alarm rate of the whole analysis, split between its metrics' tests."""
    metrics: Annotated[list[Metric], Field(min_length=1)]

    @field_validator("metrics")
    @classmethod
    def _unique(cls, metrics: list[Metric]) -> list[Metric]:
        names = [m.name for m in metrics]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"metric names must differ: {', '.join(twice)} appear twice")
        return metrics


class AnalysisSection(Model):
    templates: dict[Name, Template] = Field(default_factory=dict)


class AnalysisRun(Model):
    """A reference to a template with how long it judges (`bake`, or a canary step's
    `{analysis: name, for: 60s}`)."""

    analysis: Name
    for_: Duration = Field(60.0, alias="for")
