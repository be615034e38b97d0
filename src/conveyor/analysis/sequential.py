"""Anytime-valid tests on counts: the statistics the judge uses (docs/analysis.md).

One construction serves every count metric. Each trial is a success or not (a request
that failed; of two slots' errors, one that the canary served; a canary request slower
than a threshold). Under the null hypothesis a trial succeeds with probability at most
`p0`. The evidence against it after k successes in n trials is the Bayes factor of a
Beta-binomial mixture against the null binomial (Lindon & Malek, "Anytime-Valid
Inference for Multinomial Count Data", NeurIPS 2022):

    BF(k, n) = B(a + k, b + n - k) / B(a, b)  /  (p0^k (1 - p0)^(n - k))

with a Beta(a, b) prior centred on p0 (a = c·p0, b = c·(1 - p0), c the prior's
concentration). Under p = p0 the sequence BF(k_n, n) is a non-negative martingale with
mean 1, so by Ville's inequality P(BF ever reaches 1/alpha) <= alpha: the test may be
looked at after every trial, forever, and its false-alarm rate stays below alpha. The
one-sided alarm also requires k/n > p0; for any p < p0 the alarm is rarer still (the
alarm region grows with k), so the null "p <= p0" is covered. Pure functions of
integers: no I/O, no state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONCENTRATION = 10.0
"""The Beta prior's concentration around p0: small enough to detect large shifts within
a few trials, large enough that a handful of trials moves it little."""


def log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def log_bayes_factor(k: int, n: int, p0: float, concentration: float = CONCENTRATION) -> float:
    """ln BF(k, n) of the Beta-binomial mixture against Binomial(n, p0) (0 for n = 0)."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"p0 must be strictly between 0 and 1, got {p0}")
    a, b = concentration * p0, concentration * (1.0 - p0)
    mixture = log_beta(a + k, b + n - k) - log_beta(a, b)
    null = k * math.log(p0) + (n - k) * math.log1p(-p0)
    return mixture - null


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a one-sided test says after k successes in n trials."""

    k: int
    n: int
    p0: float
    log_bf: float
    alpha: float

    @property
    def observed(self) -> float | None:
        """k/n, or None before the first trial."""
        return self.k / self.n if self.n else None

    @property
    def alarm(self) -> bool:
        """The null p <= p0 is rejected: BF >= 1/alpha and more successes than p0 allows."""
        return self.n > 0 and self.k > self.p0 * self.n and self.log_bf >= -math.log(self.alpha)

    @property
    def against(self) -> float:
        """ln BF as evidence that the rate is above p0: 0 when the observed rate is not
        (a mixture also favours rates below p0, which is no evidence of a regression)."""
        return self.log_bf if self.n > 0 and self.k > self.p0 * self.n else 0.0

    @property
    def e_value(self) -> float:
        """BF itself (capped for display): how many times more likely the data are under
        the alternative mixture than under the null."""
        return math.exp(min(self.log_bf, 700.0))


def one_sided(
    k: int, n: int, p0: float, alpha: float, concentration: float = CONCENTRATION
) -> Evidence:
    """The test of "success probability <= p0" after k successes in n trials."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha}")
    return Evidence(k, n, p0, log_bayes_factor(k, n, p0, concentration), alpha)


def canary_share_under_null(share: float, max_ratio: float) -> float:
    """Of the errors of both slots, the share the canary serves when its error rate is
    `max_ratio` times the stable one's and it takes `share` of the requests: the p0 of
    the two-slot comparison (conditional on the total number of errors)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"the canary's share of requests must be in (0, 1), got {share}")
    if max_ratio <= 0:
        raise ValueError(f"max_ratio must be positive, got {max_ratio}")
    return max_ratio * share / (max_ratio * share + (1.0 - share))


Z_UPPER = 2.326
"""The standard normal's 99th percentile: upper confidence bounds on a quantile hold with
probability 0.99."""


def quantile_upper_index(count: int, q: float, z: float = Z_UPPER) -> int:
    """The index (0-based, into sorted samples) of an order statistic that is at least the
    true q-quantile with probability about Phi(z) (normal approximation to the binomial
    count of samples below the quantile); the last sample when there are too few."""
    if count <= 0:
        raise ValueError("no samples")
    spread = z * math.sqrt(count * q * (1.0 - q))
    return min(count - 1, math.ceil(count * q + spread) - 1)


def rate_upper_bound(k: int, n: int, z: float = Z_UPPER) -> float:
    """Wilson's upper confidence bound of a proportion from k successes in n trials:
    at least the true rate with probability about Phi(z)."""
    if n <= 0:
        raise ValueError("no trials")
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))
