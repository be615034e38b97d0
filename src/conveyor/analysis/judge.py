"""The judge: from measurements to `pass | fail | inconclusive`, with the reason as data.
Pure functions and immutable values, tested with no I/O (STYLE.md: a verdict is a
function from values to a result, as Argo Rollouts' assessMetricStatus).

Three kinds of metric:
- an **error rate**, against an absolute `max` (a one-sample test: is the canary's rate
  above max?) and/or against the stable slot (`max_ratio`: of the two slots' errors, does
  the canary serve more than its traffic share and the ratio allow?);
- a **latency quantile**, against an absolute `max` (is P(latency > max) above 1 - q?)
  and/or against the stable slot (`max_ratio` times an upper confidence bound of the
  stable's quantile);
- a **gauge** (RSS, an HTTP value, a job's exit status): each measurement within
  `min`/`max`, no statistics.

The count tests are anytime-valid (analysis.sequential): evaluated every second for as
long as the analysis runs, each raises a false alarm with probability at most its alpha.
No data, or fewer samples than `min_samples`, is inconclusive, never a pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from conveyor.analysis.sequential import (
    canary_share_under_null,
    one_sided,
    quantile_upper_index,
    rate_upper_bound,
)
from conveyor.domain.analysis import AnalysisPhase


class Verdict(StrEnum):
    PASS = "pass"
    """Enough samples, and no evidence of a regression."""
    FAIL = "fail"
    """Evidence of a regression (or a gauge out of bounds): abort."""
    INCONCLUSIVE = "inconclusive"
    """Not enough data to say: no measurement, or fewer samples than min_samples."""


SEVERITY = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAIL: 2}


@dataclass(frozen=True, slots=True)
class SlotCounts:
    """One slot's requests and failed requests over the analysis window."""

    requests: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.errors <= self.requests:
            raise ValueError(f"need 0 <= errors <= requests, got {self.errors}/{self.requests}")

    @property
    def rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True, slots=True)
class Judgement:
    """One metric's verdict with everything that explains it."""

    metric: str
    verdict: Verdict
    reason: str
    method: str
    canary: float | None = None
    """The canary's observed value (a rate, a quantile in ms, a gauge)."""
    stable: float | None = None
    threshold: float | None = None
    """The limit the canary's value was held to (absolute, or derived from stable)."""
    samples: Mapping[str, int] = field(default_factory=dict)
    """Samples per slot (`canary`, `stable`)."""
    log_bayes_factor: float | None = None
    """The test statistic: ln BF against the canary (0 when it does no worse than the
    limit); a fail needs at least ln(1/alpha)."""
    alpha: float | None = None
    unit: str = ""
    """How its values read: `ratio` (an error rate), `ms`, `bytes`, or plain."""
    hosts: int = 0
    """The fleet's hosts whose agents' reports it stands on (0: this machine's)."""
    routers: int = 0
    """The router hosts whose request summaries it stands on (0: the coordinator's own
    HAProxy)."""


@dataclass(frozen=True, slots=True)
class ErrorRateRule:
    max: float | None = None
    """The highest acceptable error rate (0.01 = 1 %)."""
    max_ratio: float | None = None
    """The canary's error rate may be at most this many times the stable one's."""
    max_increase: float | None = None
    """The canary's error rate may be at most this much above the stable one's (0.005 =
    0.5 percentage points)."""


@dataclass(frozen=True, slots=True)
class QuantileRule:
    quantile: float
    """0.99 for p99."""
    max_ms: float | None = None
    max_ratio: float | None = None
    """The canary's quantile may be at most this many times the stable one's."""


@dataclass(frozen=True, slots=True)
class GaugeRule:
    min: float | None = None
    max: float | None = None


def _worst(judgements: Sequence[Judgement]) -> Judgement:
    return max(judgements, key=lambda j: SEVERITY[j.verdict])


def _too_few(
    metric: str, method: str, samples: Mapping[str, int], min_samples: int
) -> Judgement | None:
    short = {slot: n for slot, n in samples.items() if n < min_samples}
    if not short:
        return None
    shown = ", ".join(f"{slot} {n}" for slot, n in short.items())
    return Judgement(
        metric,
        Verdict.INCONCLUSIVE,
        f"too few samples ({shown}; need {min_samples} per slot)",
        method,
        samples=dict(samples),
    )


def judge_error_rate(
    metric: str,
    rule: ErrorRateRule,
    canary: SlotCounts,
    stable: SlotCounts | None,
    *,
    share: float | None,
    min_samples: int,
    alpha: float,
) -> Judgement:
    """The canary's error rate against `rule`. `share` is the canary's share of the
    requests (its traffic weight) while these counts were taken, None when no split is
    in force (the relative limits are then not tested); `alpha` the false-alarm rate
    allowed to this metric (split between its tests).

    Evidence fails a canary at any sample size (each test is anytime-valid), but fewer
    than `min_samples` on a slot a test reads is never a pass: it is inconclusive."""
    tests = [t for t in (rule.max, rule.max_ratio, rule.max_increase) if t is not None]
    if not tests:
        raise ValueError(f"{metric}: an error-rate metric needs max, max_ratio or max_increase")
    each = alpha / len(tests)
    samples = {"canary": canary.requests}
    relative = rule.max_ratio is not None or rule.max_increase is not None
    if relative:
        samples["stable"] = stable.requests if stable is not None else 0
    found: list[Judgement] = []
    if rule.max is not None:
        found.append(_absolute_rate(metric, rule.max, canary, samples, each))
    if stable is not None and stable.requests:
        if rule.max_ratio is not None and share is not None and 0.0 < share < 1.0:
            found.append(
                _relative_rate(metric, rule.max_ratio, canary, stable, share, samples, each)
            )
        if rule.max_increase is not None:
            found.append(_rate_increase(metric, rule.max_increase, canary, stable, samples, each))
        # Every verdict shows the stable slot's rate beside the canary's.
        found = [j if j.stable is not None else replace(j, stable=stable.rate) for j in found]
    return replace(_verdict(metric, "error rate", found, samples, min_samples), unit="ratio")


def _verdict(
    metric: str,
    method: str,
    found: Sequence[Judgement],
    samples: Mapping[str, int],
    min_samples: int,
) -> Judgement:
    """The worst of a metric's tests, except that without a failure, too few samples
    (or no test that could run) is inconclusive."""
    worst = _worst(found) if found else None
    if worst is not None and worst.verdict is Verdict.FAIL:
        return worst
    short = _too_few(metric, method, samples, min_samples)
    if short is not None:
        return short
    if worst is None:
        return Judgement(
            metric,
            Verdict.INCONCLUSIVE,
            "nothing to compare with: no traffic split is in force",
            method,
            samples=dict(samples),
        )
    return worst


def _rate_increase(
    metric: str,
    increase: float,
    canary: SlotCounts,
    stable: SlotCounts,
    samples: Mapping[str, int],
    alpha: float,
) -> Judgement:
    """The canary's rate against the stable one's plus `increase`: a one-sample test whose
    limit is an upper 99 % confidence bound of the stable rate plus the increase (the
    stable slot's larger sample makes the bound tight)."""
    limit = min(0.999, rate_upper_bound(stable.errors, stable.requests) + increase)
    found = _absolute_rate(metric, limit, canary, samples, alpha)
    s_rate = stable.rate or 0.0
    if found.verdict is Verdict.PASS:
        reason = (
            f"no evidence that the canary's error rate {found.canary or 0.0:.2%} exceeds the "
            f"stable's {s_rate:.2%} by more than {increase:.2%}"
        )
    else:
        reason = f"{found.reason}: the stable's {s_rate:.2%} plus {increase:.2%} and its margin"
    return replace(
        found,
        reason=reason,
        stable=s_rate,
        method="one-sided Beta-binomial mixture SPRT against the stable rate's upper bound "
        "plus the increase",
    )


def _absolute_rate(
    metric: str, limit: float, canary: SlotCounts, samples: Mapping[str, int], alpha: float
) -> Judgement:
    evidence = one_sided(canary.errors, canary.requests, limit, alpha)
    verdict = Verdict.FAIL if evidence.alarm else Verdict.PASS
    rate = canary.rate or 0.0
    reason = (
        f"the canary's error rate {rate:.2%} is above {limit:.2%} "
        f"(BF {evidence.e_value:.3g} >= {1 / alpha:.3g})"
        if evidence.alarm
        else f"no evidence that the canary's error rate {rate:.2%} exceeds {limit:.2%}"
    )
    return Judgement(
        metric,
        verdict,
        reason,
        "one-sided Beta-binomial mixture SPRT (errors per request)",
        canary=rate,
        threshold=limit,
        samples=dict(samples),
        log_bayes_factor=evidence.against,
        alpha=alpha,
    )


def _relative_rate(
    metric: str,
    max_ratio: float,
    canary: SlotCounts,
    stable: SlotCounts,
    share: float,
    samples: Mapping[str, int],
    alpha: float,
) -> Judgement:
    p0 = canary_share_under_null(share, max_ratio)
    errors = canary.errors + stable.errors
    evidence = one_sided(canary.errors, errors, p0, alpha)
    c_rate, s_rate = canary.rate or 0.0, stable.rate or 0.0
    if evidence.alarm:
        reason = (
            f"the canary serves {canary.errors} of {errors} errors, more than "
            f"{p0:.1%} (its {share:.0%} of the traffic at {max_ratio:g}x the stable's "
            f"rate allows): {c_rate:.2%} against {s_rate:.2%} "
            f"(BF {evidence.e_value:.3g} >= {1 / alpha:.3g})"
        )
    else:
        reason = (
            f"no evidence that the canary's error rate {c_rate:.2%} exceeds "
            f"{max_ratio:g}x the stable's {s_rate:.2%}"
        )
    return Judgement(
        metric,
        Verdict.FAIL if evidence.alarm else Verdict.PASS,
        reason,
        "one-sided Beta-binomial mixture SPRT on the slot of each error, conditioned on the "
        "traffic split",
        canary=c_rate,
        stable=s_rate,
        threshold=max_ratio * s_rate,
        samples=dict(samples),
        log_bayes_factor=evidence.against,
        alpha=alpha,
    )


def judge_quantile(
    metric: str,
    rule: QuantileRule,
    canary_ms: Sequence[float],
    stable_ms: Sequence[float] | None,
    *,
    min_samples: int,
    alpha: float,
) -> Judgement:
    """The canary's latency quantile against `rule`, as a test on exceedances: under the
    null, a canary request is slower than the threshold with probability at most 1 - q.
    As for error rates, evidence fails at any sample size; too few is never a pass."""
    if not 0.0 < rule.quantile < 1.0:
        raise ValueError(f"{metric}: quantile must be in (0, 1), got {rule.quantile}")
    tests = [t for t in (rule.max_ms, rule.max_ratio) if t is not None]
    if not tests:
        raise ValueError(f"{metric}: a quantile metric needs max or max_ratio")
    each = alpha / len(tests)
    samples = {"canary": len(canary_ms)}
    if rule.max_ratio is not None:
        samples["stable"] = len(stable_ms or ())
    found: list[Judgement] = []
    if canary_ms:
        canary_q = _quantile(sorted(canary_ms), rule.quantile)
        if rule.max_ms is not None:
            found.append(
                _exceedances(metric, rule, canary_ms, rule.max_ms, canary_q, None, samples, each)
            )
        if rule.max_ratio is not None and stable_ms:
            ordered = sorted(stable_ms)
            stable_q = _quantile(ordered, rule.quantile)
            bound = ordered[quantile_upper_index(len(ordered), rule.quantile)]
            limit = rule.max_ratio * bound
            found.append(
                _exceedances(metric, rule, canary_ms, limit, canary_q, stable_q, samples, each)
            )
    return replace(_verdict(metric, "quantile", found, samples, min_samples), unit="ms")


def _quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _exceedances(
    metric: str,
    rule: QuantileRule,
    canary_ms: Sequence[float],
    limit: float,
    canary_q: float,
    stable_q: float | None,
    samples: Mapping[str, int],
    alpha: float,
) -> Judgement:
    slower = sum(1 for x in canary_ms if x > limit)
    evidence = one_sided(slower, len(canary_ms), 1.0 - rule.quantile, alpha)
    name = f"p{rule.quantile * 100:g}"
    if evidence.alarm:
        reason = (
            f"the canary's {name} {canary_q:.1f} ms is above {limit:.1f} ms: {slower} of "
            f"{len(canary_ms)} requests slower (BF {evidence.e_value:.3g} >= {1 / alpha:.3g})"
        )
    else:
        reason = f"no evidence that the canary's {name} {canary_q:.1f} ms exceeds {limit:.1f} ms"
    return Judgement(
        metric,
        Verdict.FAIL if evidence.alarm else Verdict.PASS,
        reason,
        "one-sided Beta-binomial mixture SPRT on requests slower than the threshold",
        canary=canary_q,
        stable=stable_q,
        threshold=limit,
        samples=dict(samples),
        log_bayes_factor=evidence.against,
        alpha=alpha,
    )


def judge_gauge(metric: str, rule: GaugeRule, value: float | None, unit: str = "") -> Judgement:
    """One measurement against `min`/`max` (no measurement: inconclusive)."""
    if value is None:
        return Judgement(metric, Verdict.INCONCLUSIVE, "no measurement", "bounds", unit=unit)
    said = in_unit(value, unit)
    if rule.max is not None and value > rule.max:
        reason = f"{said} is above {in_unit(rule.max, unit)}"
        return Judgement(
            metric, Verdict.FAIL, reason, "bounds", canary=value, threshold=rule.max, unit=unit
        )
    if rule.min is not None and value < rule.min:
        reason = f"{said} is below {in_unit(rule.min, unit)}"
        return Judgement(
            metric, Verdict.FAIL, reason, "bounds", canary=value, threshold=rule.min, unit=unit
        )
    # A pass shows the bound it was held to (the template's `max`, else its `min`).
    bound = rule.max if rule.max is not None else rule.min
    return Judgement(
        metric,
        Verdict.PASS,
        f"{said} is within bounds",
        "bounds",
        canary=value,
        threshold=bound,
        unit=unit,
    )


def in_unit(value: float, unit: str) -> str:
    """A value as people read it in its unit."""
    if unit == "ratio":
        return f"{value:.2%}"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    return f"{value:g}"


def shown(value: float | None, unit: str = "") -> str:
    """A measured value as the CLI and the UI show it: in its unit when it has one
    (`1.20%`, `212.0 ms`, `48.3 MiB`), else as a plain number; `-` when there is none."""
    if value is None:
        return "-"
    if unit in ("ratio", "ms", "bytes"):
        return in_unit(value, unit)
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.4g}"


# -- a whole analysis --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    duration_s: float
    """`for`: how long the analysis judges before it may pass."""
    failure_limit: int = 0
    """Failed evaluations a metric may have; one more fails the analysis."""
    inconclusive_limit: int = 30
    """Evaluations past the duration that may stay inconclusive before it pauses."""


@dataclass(frozen=True, slots=True)
class Analysis:
    """An analysis run as a fold over its evaluations: `observe` returns the next
    state. Nothing in here reads a clock; the caller says how long it has run."""

    limits: Limits
    phase: AnalysisPhase = AnalysisPhase.RUNNING
    failures: Mapping[str, int] = field(default_factory=dict)
    extended: int = 0
    """Evaluations past the duration that were inconclusive."""
    latest: tuple[Judgement, ...] = ()
    reason: str = ""

    def observe(self, judgements: Sequence[Judgement], elapsed_s: float) -> Analysis:
        if self.phase is not AnalysisPhase.RUNNING:
            return self
        if not judgements:
            raise ValueError("an evaluation judges at least one metric")
        failures = dict(self.failures)
        for j in judgements:
            if j.verdict is Verdict.FAIL:
                failures[j.metric] = failures.get(j.metric, 0) + 1
        state = replace(self, failures=failures, latest=tuple(judgements))
        over = [j for j in judgements if failures.get(j.metric, 0) > self.limits.failure_limit]
        if over:
            why = f"{over[0].metric}: {over[0].reason}{seen_on(over[:1])}"
            return replace(state, phase=AnalysisPhase.FAILED, reason=why)
        if elapsed_s < self.limits.duration_s:
            return state
        unsure = [j for j in judgements if j.verdict is not Verdict.PASS]
        if not unsure:
            why = f"every metric passed{seen_on(judgements)}"
            return replace(state, phase=AnalysisPhase.PASSED, reason=why)
        extended = self.extended + 1
        if extended > self.limits.inconclusive_limit:
            why = f"{unsure[0].metric}: {unsure[0].reason}{seen_on(unsure[:1])}"
            return replace(state, phase=AnalysisPhase.INCONCLUSIVE, extended=extended, reason=why)
        return replace(state, extended=extended)


def seen_on(judgements: Sequence[Judgement]) -> str:
    """What a verdict's data came from, when it came from the fleet: ` (seen on 3 hosts
    and 2 routers)`; empty for this machine's instances and router."""
    hosts = max((j.hosts for j in judgements), default=0)
    routers = max((j.routers for j in judgements), default=0)
    return seen_text(hosts, routers)


def seen_text(hosts: int, routers: int) -> str:
    """` (seen on 3 hosts and 2 routers)`, or empty when both are 0."""
    parts = [
        f"{n} {word}{'' if n == 1 else 's'}"
        for n, word in ((hosts, "host"), (routers, "router"))
        if n
    ]
    return f" (seen on {' and '.join(parts)})" if parts else ""
