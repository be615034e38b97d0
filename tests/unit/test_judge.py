"""Every verdict path of the judge, with no I/O: no data, too few samples, absolute and
relative limits on error rates and latency quantiles, sparse error spikes, gauges, and
an analysis run folded over its evaluations."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from conveyor.analysis.judge import (
    Analysis,
    AnalysisPhase,
    ErrorRateRule,
    GaugeRule,
    Judgement,
    Limits,
    QuantileRule,
    SlotCounts,
    Verdict,
    judge_error_rate,
    judge_gauge,
    judge_quantile,
    seen_text,
)

ALPHA = 0.001
RATIO = ErrorRateRule(max_ratio=1.0)


def rate(canary: SlotCounts, stable: SlotCounts | None = None, rule: ErrorRateRule = RATIO):
    return judge_error_rate(
        "error-rate", rule, canary, stable, share=0.1, min_samples=200, alpha=ALPHA
    )


def test_no_data_is_inconclusive_never_a_pass():
    found = rate(SlotCounts(), SlotCounts())
    assert found.verdict is Verdict.INCONCLUSIVE
    assert "too few samples (canary 0, stable 0; need 200 per slot)" in found.reason


def test_fewer_samples_than_min_samples_is_never_a_pass():
    found = rate(SlotCounts(150, 1), SlotCounts(5000, 50))
    assert found.verdict is Verdict.INCONCLUSIVE and found.samples == {
        "canary": 150,
        "stable": 5000,
    }
    assert "too few samples (canary 150; need 200 per slot)" in found.reason


def test_evidence_fails_before_min_samples():
    # The test is anytime-valid: ten failed requests out of ten is evidence already.
    found = rate(SlotCounts(10, 10), SlotCounts(90, 0))
    assert found.verdict is Verdict.FAIL and found.samples == {"canary": 10, "stable": 90}
    assert found.log_bayes_factor is not None and found.log_bayes_factor >= 6.9


def test_a_sparse_spike_before_min_samples_is_inconclusive_not_a_fail():
    found = rate(SlotCounts(60, 2), SlotCounts(540, 0))
    assert found.verdict is Verdict.INCONCLUSIVE


def test_no_split_in_force_means_nothing_to_compare_with():
    for share in (None, 0.0, 1.0):
        found = judge_error_rate(
            "error-rate",
            RATIO,
            SlotCounts(500, 5),
            SlotCounts(500, 5),
            share=share,
            min_samples=200,
            alpha=ALPHA,
        )
        assert found.verdict is Verdict.INCONCLUSIVE
        assert "nothing to compare with" in found.reason


def test_every_canary_request_failing_fails():
    found = rate(SlotCounts(200, 200), SlotCounts(1800, 0))
    assert found.verdict is Verdict.FAIL
    assert "serves 200 of 200 errors" in found.reason
    assert found.log_bayes_factor is not None and found.log_bayes_factor > 7
    assert (found.canary, found.stable) == (1.0, 0.0)


def test_five_percent_against_a_tenth_of_a_percent_fails():
    # 60 s at 200 req/s, 10 % to the canary.
    found = rate(SlotCounts(1200, 60), SlotCounts(10800, 11))
    assert found.verdict is Verdict.FAIL


def test_the_same_error_rate_on_both_slots_passes():
    found = rate(SlotCounts(1200, 12), SlotCounts(10800, 108))
    assert found.verdict is Verdict.PASS
    assert found.reason.startswith("no evidence")


def test_a_sparse_spike_of_errors_does_not_fail():
    # Three errors in a row on the canary, none on stable: not enough evidence at 10 %.
    found = rate(SlotCounts(400, 3), SlotCounts(3600, 0))
    assert found.verdict is Verdict.PASS


def test_an_absolute_error_rate_limit():
    rule = ErrorRateRule(max=0.01)
    assert rate(SlotCounts(1000, 60), None, rule).verdict is Verdict.FAIL
    assert rate(SlotCounts(1000, 5), None, rule).verdict is Verdict.PASS
    assert (
        "no evidence that the canary's error rate 0.50% exceeds 1.00%"
        in rate(SlotCounts(1000, 5), None, rule).reason
    )


def test_both_limits_split_alpha_and_the_worse_verdict_wins():
    rule = ErrorRateRule(max=0.5, max_ratio=1.0)
    found = rate(SlotCounts(1000, 100), SlotCounts(9000, 9), rule)
    assert found.verdict is Verdict.FAIL and found.alpha == ALPHA / 2
    assert "serves 100 of 109 errors" in found.reason


def test_an_increase_in_percentage_points_over_stable():
    rule = ErrorRateRule(max_increase=0.005)
    # 1 % on stable; the canary at 3 %: more than 0.5 points above.
    worse = rate(SlotCounts(3000, 90), SlotCounts(27000, 270), rule)
    assert worse.verdict is Verdict.FAIL and worse.stable == pytest.approx(0.01)
    assert "plus 0.50%" in worse.reason
    # The canary at 1.2 %: within the half point.
    close = rate(SlotCounts(3000, 36), SlotCounts(27000, 270), rule)
    assert close.verdict is Verdict.PASS
    assert close.reason.endswith("by more than 0.50%")
    assert close.threshold is not None and 0.015 < close.threshold < 0.017


def test_an_error_rate_metric_needs_a_limit():
    with pytest.raises(ValueError, match="needs max, max_ratio or max_increase"):
        rate(SlotCounts(1, 0), None, ErrorRateRule())
    with pytest.raises(ValueError, match="errors <= requests"):
        SlotCounts(1, 2)


def latencies(rng: random.Random, n: int, base: float, extra: float = 0.0) -> list[float]:
    return [base + rng.expovariate(1 / 10) + extra for _ in range(n)]


P99 = QuantileRule(quantile=0.99, max_ratio=1.2)


def quantile(canary: list[float], stable: list[float] | None, rule: QuantileRule = P99):
    return judge_quantile("p99", rule, canary, stable, min_samples=200, alpha=ALPHA)


def test_a_latency_regression_against_stable_fails():
    rng = random.Random(1)
    found = quantile(latencies(rng, 1200, 20, extra=200), latencies(rng, 10800, 20))
    assert found.verdict is Verdict.FAIL
    assert found.canary is not None and found.stable is not None
    assert found.canary > 200 > found.stable


def test_the_same_latency_on_both_slots_passes():
    rng = random.Random(2)
    found = quantile(latencies(rng, 1200, 20), latencies(rng, 10800, 20))
    assert found.verdict is Verdict.PASS


def test_an_absolute_latency_limit():
    rng = random.Random(3)
    rule = QuantileRule(quantile=0.99, max_ms=300)
    slow = quantile(latencies(rng, 500, 400), None, rule)
    assert slow.verdict is Verdict.FAIL and slow.threshold == 300
    assert "slower" in slow.reason
    assert quantile(latencies(rng, 500, 20), None, rule).verdict is Verdict.PASS


def test_too_few_latency_samples_is_inconclusive_unless_they_are_evidence():
    assert quantile([1.2] * 10, [1.0] * 1000).verdict is Verdict.INCONCLUSIVE
    assert quantile([], [1.0] * 1000).verdict is Verdict.INCONCLUSIVE
    # Every one of ten requests five thousand times slower than stable's p99 bound.
    assert quantile([5000.0] * 10, [1.0] * 1000).verdict is Verdict.FAIL


def test_a_quantile_metric_needs_a_quantile_and_a_limit():
    with pytest.raises(ValueError, match="quantile must be"):
        quantile([1.0], None, QuantileRule(quantile=1.0, max_ms=1))
    with pytest.raises(ValueError, match="needs max or max_ratio"):
        quantile([1.0], None, QuantileRule(quantile=0.5))


def test_gauges():
    rss = GaugeRule(max=512)
    assert judge_gauge("rss", rss, None).verdict is Verdict.INCONCLUSIVE
    assert judge_gauge("rss", rss, 600).verdict is Verdict.FAIL
    passed = judge_gauge("rss", rss, 100)
    # A pass names the bound the template set (the UI showed none for rss).
    assert passed.verdict is Verdict.PASS and passed.threshold == 512
    assert judge_gauge("ready", GaugeRule(min=1), 3).threshold == 1
    low = judge_gauge("ready", GaugeRule(min=1), 0)
    assert low.verdict is Verdict.FAIL and low.reason == "0 is below 1"


# -- an analysis run ---------------------------------------------------------------------


def j(verdict: Verdict, metric: str = "error-rate") -> Judgement:
    return Judgement(metric, verdict, f"it is {verdict}", "test")


LIMITS = Limits(duration_s=60, failure_limit=0, inconclusive_limit=2)


def test_a_failure_fails_the_analysis_at_once():
    run = Analysis(LIMITS).observe([j(Verdict.INCONCLUSIVE)], 1).observe([j(Verdict.FAIL)], 2)
    assert run.phase is AnalysisPhase.FAILED
    assert run.reason == "error-rate: it is fail"


def test_the_failure_limit_tolerates_that_many_failures():
    run = Analysis(Limits(60, failure_limit=1))
    run = run.observe([j(Verdict.FAIL, "rss")], 1)
    assert run.phase is AnalysisPhase.RUNNING and run.failures == {"rss": 1}
    assert run.observe([j(Verdict.FAIL, "rss")], 2).phase is AnalysisPhase.FAILED


def test_passing_needs_the_whole_duration():
    run = Analysis(LIMITS).observe([j(Verdict.PASS)], 30)
    assert run.phase is AnalysisPhase.RUNNING
    run = run.observe([j(Verdict.PASS), j(Verdict.PASS, "p99")], 60)
    assert run.phase is AnalysisPhase.PASSED and run.reason == "every metric passed"


def test_a_verdict_says_how_many_hosts_and_routers_its_data_came_from():
    fleet = replace(j(Verdict.FAIL), hosts=3, routers=2)
    failed = Analysis(LIMITS).observe([fleet], 1)
    assert failed.reason == "error-rate: it is fail (seen on 3 hosts and 2 routers)"
    one = [replace(j(Verdict.PASS), hosts=1), replace(j(Verdict.PASS, "rss"), hosts=2)]
    passed = Analysis(LIMITS).observe(one, 60)
    assert passed.reason == "every metric passed (seen on 2 hosts)"
    assert seen_text(0, 1) == " (seen on 1 router)" and seen_text(0, 0) == ""


def test_an_inconclusive_end_extends_then_pauses():
    run = Analysis(LIMITS)
    for second in range(1, 61):  # inconclusive the whole time: no verdict before the end
        run = run.observe([j(Verdict.INCONCLUSIVE)], second)
    assert run.phase is AnalysisPhase.RUNNING and run.extended == 1
    run = run.observe([j(Verdict.INCONCLUSIVE)], 61)
    assert run.phase is AnalysisPhase.RUNNING and run.extended == 2
    run = run.observe([j(Verdict.INCONCLUSIVE)], 62)
    assert run.phase is AnalysisPhase.INCONCLUSIVE
    assert run.reason == "error-rate: it is inconclusive"


def test_an_extended_analysis_passes_once_it_has_its_samples():
    run = Analysis(LIMITS).observe([j(Verdict.INCONCLUSIVE)], 60)
    run = run.observe([j(Verdict.PASS)], 61)
    assert run.phase is AnalysisPhase.PASSED


def test_a_finished_analysis_does_not_change_and_an_empty_evaluation_is_refused():
    done = Analysis(LIMITS).observe([j(Verdict.FAIL)], 1)
    assert done.observe([j(Verdict.PASS)], 100) is done
    with pytest.raises(ValueError, match="at least one metric"):
        Analysis(LIMITS).observe([], 1)
