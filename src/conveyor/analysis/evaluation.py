"""One analysis run's evaluations: each interval's measurements folded into running
tallies per metric and slot, then judged (analysis.judge). Pure: no clock, no I/O; the
driver gives it the measurements and the time.

The count tests judge everything since the tallies began, since each is anytime-valid
(docs/analysis.md). The tallies begin again when the canary's traffic share changes,
because the two-slot error test is valid for one share. Latency in the canary's first
`warmup` seconds of traffic is left out; errors never are.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

from conveyor.analysis.judge import (
    ErrorRateRule,
    GaugeRule,
    Judgement,
    QuantileRule,
    SlotCounts,
    Verdict,
    judge_error_rate,
    judge_gauge,
    judge_quantile,
)
from conveyor.analysis.providers.base import Measurement, Slot
from conveyor.pipeline.analysis import Metric, Provider, Template

LATENCIES_KEPT = 100_000
"""Each slot's newest latencies kept for its quantile and exceedances. The stable slot's
quantile is steady long before this many; a canary judged beyond it (a long bake at full
traffic) is judged on its newest 100,000 requests, which keeps an evaluation's sort
within milliseconds."""


@dataclass
class Tally:
    """One slot's requests for one router metric since the tallies began."""

    requests: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))


def _count_metric(metric: Metric) -> bool:
    """Judged by a count test over the whole analysis (not a gauge)."""
    return metric.is_error_rate or metric.is_latency


def error_rule(metric: Metric, compare: bool) -> ErrorRateRule | None:
    """The metric's error-rate limits (without the relative ones when there is no
    stable slot to compare with); None when nothing is left to test."""
    rule = ErrorRateRule(
        max=metric.max[0] if metric.max else None,
        max_ratio=metric.max_ratio if compare else None,
        max_increase=metric.max_increase[0] if compare and metric.max_increase else None,
    )
    return (
        rule if any(v is not None for v in (rule.max, rule.max_ratio, rule.max_increase)) else None
    )


def quantile_rule(metric: Metric, compare: bool) -> QuantileRule | None:
    assert metric.quantile is not None
    rule = QuantileRule(
        quantile=metric.quantile,
        max_ms=metric.max[0] * 1000 if metric.max else None,
        max_ratio=metric.max_ratio if compare else None,
    )
    return rule if rule.max_ms is not None or rule.max_ratio is not None else None


def gauge_rule(metric: Metric) -> GaugeRule:
    if metric.provider is Provider.ALERT:
        return GaugeRule(max=0.0)  # a firing alert is 1
    return GaugeRule(
        min=metric.min[0] if metric.min else None, max=metric.max[0] if metric.max else None
    )


def gauge_unit(metric: Metric) -> str:
    if metric.provider is Provider.PROCESS:
        return "bytes" if metric.measure == "rss" else "ratio"
    return ""


def judged(template: Template, compare: bool) -> list[Metric]:
    """The template's metrics that can be judged: with no stable slot to compare with
    (after promotion), a router metric with only relative limits cannot."""
    out = []
    for metric in template.metrics:
        if metric.is_error_rate and error_rule(metric, compare) is None:
            continue
        if metric.is_latency and quantile_rule(metric, compare) is None:
            continue
        out.append(metric)
    return out


NOTHING_TO_JUDGE = Judgement(
    "-",
    Verdict.INCONCLUSIVE,
    "every metric of the template compares with the stable slot, and none serves beside "
    "the new revision after promotion: give a metric an absolute limit (`max`) to bake",
    "none",
)


class Evaluation:
    """The tallies of one analysis run, kept by the driver between evaluations."""

    def __init__(self, template: Template, *, compare: bool) -> None:
        self.template = template
        self.compare = compare
        """Whether a stable slot serves beside the canary (relative limits apply)."""
        self.metrics = judged(template, compare)
        self.tallies: dict[tuple[str, Slot], Tally] = {}
        self.latest: dict[str, Measurement] = {}
        """A gauge metric's newest canary measurement."""
        self.share: float | None = None
        self.traffic_from: float | None = None
        """The end of the first window in which the canary served a request."""
        self.resets = 0
        self.seen: dict[str, tuple[set[str], set[str]]] = {}
        """Per metric, the hosts and router hosts its measurements stood on so far."""

    def add(self, measurements: Sequence[Measurement], share: float | None) -> list[Judgement]:
        """Fold one interval's measurements in and judge every metric. `share` is the
        canary's traffic share (0 to 1) while they were taken, None without a split."""
        if share != self.share:
            if self.tallies:
                self.resets += 1
            self.tallies.clear()
            self.share = share
        for m in measurements:
            self._fold(m)
        if not self.metrics:
            return [NOTHING_TO_JUDGE]
        return [self._seen(self._judge(metric)) for metric in self.metrics]

    def _seen(self, judged: Judgement) -> Judgement:
        hosts, routers = self.seen.get(judged.metric, ((), ()))
        if not hosts and not routers:
            return judged
        return replace(judged, hosts=len(hosts), routers=len(routers))

    def _fold(self, m: Measurement) -> None:
        if m.hosts or m.routers:
            hosts, routers = self.seen.setdefault(m.metric, (set(), set()))
            hosts.update(m.hosts)
            routers.update(m.routers)
        if not _is_count(self.template, m.metric):
            if m.slot is Slot.CANARY:
                self.latest[m.metric] = m
            return
        if not m.samples:
            return
        tally = self.tallies.setdefault((m.metric, m.slot), Tally())
        if m.slot is Slot.CANARY and self.traffic_from is None:
            self.traffic_from = m.end
        if m.latencies_ms:
            if m.slot is Slot.CANARY and self._warming(m):
                return
            tally.latencies.extend(m.latencies_ms)
            tally.requests += m.samples
        else:
            tally.requests += m.samples
            tally.errors += m.failures

    def _warming(self, m: Measurement) -> bool:
        assert self.traffic_from is not None
        return m.end <= self.traffic_from + self.template.warmup

    def _tally(self, metric: Metric, slot: Slot) -> Tally:
        return self.tallies.get((metric.name, slot), Tally())

    def _alpha(self) -> float:
        counted = sum(1 for m in self.metrics if _count_metric(m))
        return self.template.alpha / max(1, counted)

    def _judge(self, metric: Metric) -> Judgement:
        canary, stable = self._tally(metric, Slot.CANARY), self._tally(metric, Slot.STABLE)
        min_samples = self.template.min_samples
        if metric.is_error_rate:
            rule = error_rule(metric, self.compare)
            assert rule is not None
            return judge_error_rate(
                metric.name,
                rule,
                SlotCounts(canary.requests, canary.errors),
                SlotCounts(stable.requests, stable.errors) if self.compare else None,
                share=self.share,
                min_samples=min_samples,
                alpha=self._alpha(),
            )
        if metric.is_latency:
            rule_q = quantile_rule(metric, self.compare)
            assert rule_q is not None
            return judge_quantile(
                metric.name,
                rule_q,
                list(canary.latencies),
                list(stable.latencies) if self.compare else None,
                min_samples=min_samples,
                alpha=self._alpha(),
            )
        latest = self.latest.get(metric.name)
        value = latest.value if latest else None
        found = judge_gauge(metric.name, gauge_rule(metric), value, gauge_unit(metric))
        if latest is not None and latest.detail:
            if latest.value is None:
                return replace(found, reason=f"no measurement: {latest.detail}")
            if found.verdict is Verdict.FAIL:
                return replace(found, reason=f"{found.reason} ({latest.detail})")
        return found


def _is_count(template: Template, name: str) -> bool:
    return any(m.name == name and _count_metric(m) for m in template.metrics)


def judgement_json(j: Judgement) -> dict[str, object]:
    """A judgement as stored and served (finite numbers only)."""
    out = asdict(j)
    out["verdict"] = j.verdict.value
    out["samples"] = dict(j.samples)
    for key in ("canary", "stable", "threshold", "log_bayes_factor"):
        value = out.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
    return out


def measurement_json(m: Measurement) -> dict[str, object]:
    """A measurement as stored: its value and counts (not each request's time)."""
    return {
        "metric": m.metric,
        "slot": m.slot.value,
        "value": m.value,
        "samples": m.samples,
        "failures": m.failures,
        "start": m.start,
        "end": m.end,
        "detail": m.detail,
        "hosts": sorted(m.hosts),
        "routers": sorted(m.routers),
    }


def worst(judgements: Sequence[Judgement]) -> Verdict:
    if any(j.verdict is Verdict.FAIL for j in judgements):
        return Verdict.FAIL
    if any(j.verdict is Verdict.INCONCLUSIVE for j in judgements):
        return Verdict.INCONCLUSIVE
    return Verdict.PASS
