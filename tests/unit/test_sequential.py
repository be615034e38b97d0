"""The anytime-valid count test: exact identities, and its error rates by simulation
(fixed seeds, so every run checks the same sequences)."""

from __future__ import annotations

import math
import random

import pytest

from conveyor.analysis.sequential import (
    CONCENTRATION,
    canary_share_under_null,
    log_bayes_factor,
    one_sided,
    quantile_upper_index,
    rate_upper_bound,
)


def test_no_trials_is_no_evidence():
    assert log_bayes_factor(0, 0, 0.1) == 0.0
    evidence = one_sided(0, 0, 0.1, 0.01)
    assert evidence.observed is None and not evidence.alarm


def test_a_first_trial_never_moves_the_factor():
    # The mixture's prior predictive is p0 itself: one trial is no evidence either way.
    for p0 in (0.001, 0.1, 0.5, 0.9):
        assert log_bayes_factor(1, 1, p0) == pytest.approx(0.0, abs=1e-12)
        assert log_bayes_factor(0, 1, p0) == pytest.approx(0.0, abs=1e-12)


def test_two_successes_match_the_closed_form():
    p0, c = 0.2, CONCENTRATION
    expected = (c * p0 + 1) / ((c + 1) * p0)
    assert math.exp(log_bayes_factor(2, 2, p0)) == pytest.approx(expected)


def test_the_factor_has_mean_one_under_the_null():
    # E[BF] = sum_k Binom(n, k; p0) BF(k, n) = 1: a martingale's mean.
    n, p0 = 40, 0.07
    total = sum(
        math.comb(n, k) * p0**k * (1 - p0) ** (n - k) * math.exp(log_bayes_factor(k, n, p0))
        for k in range(n + 1)
    )
    assert total == pytest.approx(1.0, rel=1e-9)


def _first_alarm(rng: random.Random, p: float, p0: float, alpha: float, n: int, every: int):
    k = 0
    for i in range(1, n + 1):
        k += rng.random() < p
        if i % every == 0 and one_sided(k, i, p0, alpha).alarm:
            return i
    return None


@pytest.mark.parametrize("p", [0.02, 0.01])
def test_looking_after_every_batch_keeps_false_alarms_under_alpha(p: float):
    """At p = p0 (and below it, the composite null), checked every 10 trials for 3,000
    trials: the share of sequences that ever alarm stays below alpha."""
    rng = random.Random(20261204)
    alpha, runs = 0.05, 600
    alarms = sum(_first_alarm(rng, p, 0.02, alpha, 3000, 10) is not None for _ in range(runs))
    assert alarms / runs <= alpha


def test_a_tripled_rate_is_found_and_quickly():
    rng = random.Random(7)
    found = [_first_alarm(rng, 0.06, 0.02, 0.001, 5000, 10) for _ in range(100)]
    assert all(f is not None for f in found)
    assert sorted(f for f in found if f is not None)[94] < 2500  # p95 of the trials needed


def test_an_alarm_needs_more_successes_than_the_null_allows():
    # Far fewer successes than p0 gives a large factor too, but that is not "worse".
    assert math.exp(log_bayes_factor(0, 5000, 0.1)) > 1e6
    assert not one_sided(0, 5000, 0.1, 0.001).alarm
    assert one_sided(2000, 5000, 0.1, 0.001).alarm


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="0 <= k <= n"):
        log_bayes_factor(3, 2, 0.1)
    with pytest.raises(ValueError, match="p0"):
        log_bayes_factor(0, 1, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        one_sided(0, 1, 0.1, 1.5)
    with pytest.raises(ValueError, match="share"):
        canary_share_under_null(1.0, 1.0)
    with pytest.raises(ValueError, match="max_ratio"):
        canary_share_under_null(0.5, 0.0)
    with pytest.raises(ValueError, match="no samples"):
        quantile_upper_index(0, 0.99)
    with pytest.raises(ValueError, match="no trials"):
        rate_upper_bound(0, 0)


def test_the_rate_bound_is_above_the_rate_and_tightens():
    assert 0.01 < rate_upper_bound(100, 10_000) < 0.013
    assert rate_upper_bound(1, 10) > rate_upper_bound(100, 1000) > 0.1
    assert rate_upper_bound(0, 100) > 0 and rate_upper_bound(100, 100) == 1.0


def test_the_canary_share_of_errors_under_the_null():
    assert canary_share_under_null(0.1, 1.0) == pytest.approx(0.1)
    assert canary_share_under_null(0.1, 2.0) == pytest.approx(0.2 / 1.1)
    assert canary_share_under_null(0.5, 3.0) == pytest.approx(0.75)


def test_the_quantile_bound_is_above_the_point_estimate():
    assert quantile_upper_index(10_000, 0.99) > 9_899
    assert quantile_upper_index(10_000, 0.99) < 9_950
    assert quantile_upper_index(50, 0.99) == 49  # too few samples: the largest one
