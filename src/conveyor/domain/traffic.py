"""Requests as a traffic router served them: what HAProxy's request log yields and the
`router` analysis provider judges."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Served:
    """One request as the traffic router served it."""

    at: float
    """When the router reported it (wall clock, seconds)."""
    status: int
    """The HTTP status sent to the client (HAProxy's 503/504 for a refused or timed-out
    server; -1 when the client went away before an answer)."""
    ms: float
    """Total active time of the request in the router, milliseconds."""
    preview: bool = False
    """Came in through the preview URL rather than the environment's URL."""
    router: str | None = None
    """The router host that served it (None: the coordinator's own HAProxy)."""

    @property
    def failed(self) -> bool:
        """A server-side failure: 5xx, or no answer (a refused or timed-out server)."""
        return self.status >= 500


LATENCY_BASE = 1.1
"""Latency histograms (a router host's per-second summaries) have buckets this much
wider each: a quantile read from one is within 10 % of the exact one."""


def latency_bucket(ms: float) -> int:
    """The histogram bucket of a request's time: 0 under 1 ms, else the `i` with
    1.1^(i-1) ≤ ms < 1.1^i."""
    if ms < 1.0:
        return 0
    return math.floor(math.log(ms, LATENCY_BASE)) + 1


def bucket_ms(bucket: int) -> float:
    """The time a bucket stands for: its upper bound (a quantile is never understated)."""
    return float(LATENCY_BASE**bucket) if bucket > 0 else 1.0
