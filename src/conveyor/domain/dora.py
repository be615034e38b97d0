"""DORA's four keys, computed from a window of production deployments (docs/dora.md).
Pure: storage.dora reads the deployments and says which failed and when each failure
was recovered; this module counts.

- deployment frequency: deploys (not rollbacks) that succeeded, per day of the window;
- lead time for changes: the median, over those deploys, of the time from their commit
  to their success (pairs of 0 or less excluded, as fourkeys does: automated changes);
- change failure rate: of the deploys that changed production (succeeded, or aborted
  by an analysis or the health-check rule), the share that
  failed: aborted that way, rolled back later, or fixed by a later deploy marked `fix`;
- failed-deployment recovery time: the median time from a failure's start (a rolled
  back or fixed revision's promotion; an aborted one's start) to its recovery (the
  rollback's or the fix's success; the abort's end).

Each figure gets the band of the 2023 State of DevOps report: its thresholds rise with
each band for all four keys (the 2024 report's fail rates do not: its high cluster fails
more often than its medium one), so a band is a fair reading of one key alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

DAY = 86_400.0


class Band(StrEnum):
    ELITE = "elite"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


ORDER = (Band.ELITE, Band.HIGH, Band.MEDIUM, Band.LOW)


@dataclass(frozen=True)
class Change:
    """One production deployment, as DORA sees it."""

    project: str
    number: int
    succeeded: bool
    started_at: datetime
    finished_at: datetime
    team: str = ""
    committed_at: datetime | None = None
    aborted_by_rule: bool = False
    """Aborted by an analysis or the health-check rule (not by a person)."""
    recovered_at: datetime | None = None
    """When a failure of it was recovered: a rollback or a fix succeeded (None when it
    was neither rolled back nor fixed)."""

    @property
    def counts(self) -> bool:
        """It changed production: it succeeded, or a rule aborted it."""
        return self.succeeded or self.aborted_by_rule

    @property
    def failed(self) -> bool:
        return self.aborted_by_rule or (self.succeeded and self.recovered_at is not None)

    @property
    def recovery_s(self) -> float | None:
        if self.aborted_by_rule:
            return (self.finished_at - self.started_at).total_seconds()
        if self.succeeded and self.recovered_at is not None:
            return (self.recovered_at - self.finished_at).total_seconds()
        return None


@dataclass(frozen=True)
class Figures:
    deployments: int
    """Deploys that succeeded in the window."""
    per_day: float
    lead_time_s: float | None
    """Median; None without a deploy that knows its commit's time."""
    lead_times: int
    changes: int
    """Deploys that changed production (the failure rate's denominator)."""
    failures: int
    failure_rate: float | None
    recovery_s: float | None
    recoveries: int
    bands: dict[str, Band | None]

    @property
    def band(self) -> Band | None:
        """The lowest band of the keys that have one."""
        known = [b for b in self.bands.values() if b is not None]
        return max(known, key=ORDER.index) if known else None


def frequency_band(per_day: float) -> Band:
    """On demand (a deploy a day or more), daily to weekly, weekly to monthly, rarer."""
    if per_day >= 1:
        return Band.ELITE
    if per_day >= 1 / 7:
        return Band.HIGH
    if per_day >= 1 / 30:
        return Band.MEDIUM
    return Band.LOW


def duration_band(seconds: float, elite: float, high: float, medium: float) -> Band:
    if seconds < elite:
        return Band.ELITE
    if seconds < high:
        return Band.HIGH
    if seconds < medium:
        return Band.MEDIUM
    return Band.LOW


def failure_band(rate: float) -> Band:
    if rate <= 0.05:
        return Band.ELITE
    if rate <= 0.10:
        return Band.HIGH
    if rate <= 0.15:
        return Band.MEDIUM
    return Band.LOW


def figures(changes: Sequence[Change], days: float) -> Figures:
    """The four keys of `changes` (production deployments that ended in a window of
    `days` days)."""
    deploys = [c for c in changes if c.succeeded]
    waits = [(c.finished_at - c.committed_at).total_seconds() for c in deploys if c.committed_at]
    leads = [w for w in waits if w > 0]
    counted = [c for c in changes if c.counts]
    failed = [c for c in counted if c.failed]
    recoveries = [r for c in failed if (r := c.recovery_s) is not None]
    per_day = len(deploys) / days if days > 0 else 0.0
    lead = statistics.median(leads) if leads else None
    rate = len(failed) / len(counted) if counted else None
    recovery = statistics.median(recoveries) if recoveries else None
    bands: dict[str, Band | None] = {
        "deployment_frequency": frequency_band(per_day),
        "lead_time": duration_band(lead, DAY, 7 * DAY, 30 * DAY) if lead is not None else None,
        "change_failure_rate": failure_band(rate) if rate is not None else None,
        "recovery": duration_band(recovery, DAY / 24, DAY, 7 * DAY)
        if recovery is not None
        else None,
    }
    return Figures(
        deployments=len(deploys),
        per_day=per_day,
        lead_time_s=lead,
        lead_times=len(leads),
        changes=len(counted),
        failures=len(failed),
        failure_rate=rate,
        recovery_s=recovery,
        recoveries=len(recoveries),
        bands=bands,
    )
