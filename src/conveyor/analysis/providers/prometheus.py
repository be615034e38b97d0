"""The `prometheus` provider: a PromQL query over Prometheus's HTTP API
(`GET /api/v1/query`), evaluated at the end of each window.

`{{ canary }}` and `{{ stable }}` in the query stand for the slot's instances, as a
regular expression of their `host:port` addresses (`instance=~"{{ canary }}"`), which
is how Prometheus names the targets Conveyor lists for it (deploy/metrics_targets.py:
a file for `file_sd_configs`). The query's one number is the canary's measurement,
judged by the metric's `min`/`max`; a ratio of the two slots is one query:

    sum(rate(payments_requests_total{code=~"5..", instance=~"{{ canary }}"}[30s]))
      / sum(rate(payments_requests_total{instance=~"{{ canary }}"}[30s]))

An empty answer, NaN, a failed request or a query error is no data, with the reason.
The server is the metric's `address`, else the coordinator's `CONVEYOR_PROMETHEUS_URL`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import httpx

from conveyor.analysis.providers.base import Measurement, Slot, SlotTarget
from conveyor.pipeline.analysis import Metric

TIMEOUT_S = 1.5
"""Below the driver's limit on one measurement (deploy.analyses.MEASURE_TIMEOUT_S)."""
PLACEHOLDER = re.compile(r"\{\{\s*(canary|stable)\s*\}\}")
NOWHERE = "^$"
"""What a slot with no instance expands to: matches no instance."""


def instances_pattern(target: SlotTarget | None) -> str:
    """The slot's instances as a regular expression of `127.0.0.1:PORT` addresses. No
    backslashes, so that it fits a PromQL string quoted either way (its dots match any
    character, and Prometheus anchors the whole pattern: no other address matches)."""
    if target is None or not target.instances:
        return NOWHERE
    return "|".join(f"127.0.0.1:{i.port}" for i in target.instances)


def render(query: str, targets: Sequence[SlotTarget]) -> str:
    by_slot = {t.slot: t for t in targets}

    def expand(found: re.Match[str]) -> str:
        return instances_pattern(by_slot.get(Slot(found[1])))

    return PLACEHOLDER.sub(expand, query)


def value_of(answer: dict[str, Any]) -> tuple[float | None, int, str]:
    """(value, series, detail) from a /api/v1/query answer."""
    if answer.get("status") != "success":
        return None, 0, f"query failed: {answer.get('errorType')}: {answer.get('error')}"
    data = answer.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        raw = result[1]
        series = 1
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return None, 0, "the query returned no series"
        if len(result) > 1:
            return None, len(result), f"the query returned {len(result)} series, not one"
        raw = result[0]["value"][1]
        series = 1
    else:
        return None, 0, f"the query returned a {kind}, not a number"
    value = float(raw)
    if math.isnan(value):
        return None, series, "the query returned NaN (no traffic in its range?)"
    return value, series, f"= {value:g}"


class PrometheusProvider:
    def __init__(self, url: str | None, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/") if url else None
        self.client = client or httpx.AsyncClient(timeout=TIMEOUT_S)

    async def close(self) -> None:
        await self.client.aclose()

    async def measure(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        assert metric.query is not None
        base = (metric.address or self.url or "").rstrip("/")
        if not base:
            detail = "no Prometheus: give the metric an `address` or set CONVEYOR_PROMETHEUS_URL"
            return [Measurement(metric.name, Slot.CANARY, None, 0, start, end, detail)]
        query = render(metric.query, targets)
        try:
            response = await self.client.get(
                f"{base}/api/v1/query", params={"query": query, "time": f"{end:.3f}"}
            )
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            detail = f"GET {base}/api/v1/query: {type(exc).__name__}: {exc}"
            return [Measurement(metric.name, Slot.CANARY, None, 0, start, end, detail)]
        value, series, detail = value_of(answer)
        samples = 0 if value is None else series
        return [Measurement(metric.name, Slot.CANARY, value, samples, start, end, detail)]
