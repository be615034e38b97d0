"""The `router` provider (the default, no setup): each slot's requests as the traffic
router served them, from its per-request log (HAProxy logs every request of an
environment's frontend to a ring that the coordinator reads; hosting/request_log.py).

For a request rate (`measure: requests`), it is the slot's requests per second. For an
error rate, a measurement counts the slot's requests in the window and those that
failed (a 5xx, including HAProxy's 503 for a refused connection and 504 for a timed-out
server); for a latency quantile, it carries every request's time so that the judge can
test the whole analysis, and its value is the window's quantile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from conveyor.analysis.providers.base import Measurement, RequestSource, SlotTarget, hosts_of
from conveyor.domain.traffic import Served
from conveyor.pipeline.analysis import Metric


class RouterProvider:
    def __init__(self, source: RequestSource) -> None:
        self.source = source

    async def close(self) -> None:
        return None

    async def measure(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        return [await self._one(metric, t, start, end) for t in targets if t.route and t.side]

    async def _one(
        self, metric: Metric, target: SlotTarget, start: float, end: float
    ) -> Measurement:
        assert target.route is not None and target.side is not None
        served = [
            s
            for s in await self.source.served(target.route, target.side, start, end)
            if s.preview is target.preview
        ]
        found = self._measured(metric, target, served, start, end)
        if not served:
            return found
        routers = frozenset(s.router for s in served if s.router is not None)
        return replace(found, hosts=hosts_of(target.instances), routers=routers)

    @staticmethod
    def _measured(
        metric: Metric, target: SlotTarget, served: list[Served], start: float, end: float
    ) -> Measurement:
        if metric.measure == "requests":
            rate = len(served) / max(end - start, 1e-3)
            detail = f"{len(served)} requests in {end - start:.1f} s"
            return Measurement(metric.name, target.slot, rate, len(served), start, end, detail)
        if not served:
            return Measurement(metric.name, target.slot, None, 0, start, end, "no requests")
        if metric.quantile is None:
            failed = sum(1 for s in served if s.failed)
            return Measurement(
                metric.name,
                target.slot,
                failed / len(served),
                len(served),
                start,
                end,
                f"{failed} of {len(served)} requests failed",
                failures=failed,
            )
        times = tuple(s.ms for s in served)
        value = window_quantile(times, metric.quantile)
        return Measurement(
            metric.name,
            target.slot,
            value,
            len(served),
            start,
            end,
            f"p{metric.quantile * 100:g} of {len(served)} requests",
            latencies_ms=times,
        )


def window_quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of `values` (the smallest value at or above a share q of them)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
