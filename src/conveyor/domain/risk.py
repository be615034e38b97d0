"""A deployment's risk score, 0-100, explained factor by factor (docs/policy.md, "Risk
score"). Pure: the facts are gathered elsewhere (the diff from git, the run's reports,
the service's recent deployments, the environment's clock and freeze windows) and
scored here, so that the same facts always give the same score.

Seven factors, each with a weight (the most it adds) and a share of it from 0 to 1; the
score is the sum of the contributions, rounded. The weights add up to 100; each factor
counts in full when:

- change size (20): 1,000 lines or 50 files changed since the deployed revision, on a
  log scale from 10 lines or 2 files; an unknown diff (a first deploy, a rewritten
  history) counts half;
- sensitive paths (20): two or more changed files match `risk.sensitive_paths` (one:
  half);
- coverage (10): line coverage dropped by 5 points or more (linear; a rise counts 0);
- allowed failures (10): two or more jobs failed with `allow_failure` (one: half);
- recent failures (15): 30 % or more of the service's last 30 deployments there were
  rolled back or aborted (linear);
- timing (15): outside working hours, at a weekend, or within 24 h of a freeze window
  (a Friday from 15:00, or 24-72 h before a freeze: half);
- migrations (10): its `pre_deploy` runs migrations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

SIZE_W, SENSITIVE_W, COVERAGE_W, ALLOWED_W, RECENT_W, TIMING_W, MIGRATIONS_W = (
    20,
    20,
    10,
    10,
    15,
    15,
    10,
)
FULL_LINES, FULL_FILES = 1000, 50
FLOOR_LINES, FLOOR_FILES = 10, 2
FULL_COVERAGE_DROP = 5.0
FULL_FAILURE_RATE = 0.30
WORK_STARTS, WORK_ENDS = 8, 18
"""Working hours, in the environment's time zone: [8:00, 18:00)."""
FRIDAY_LATE = 15
NEAR_FREEZE_H, SOON_FREEZE_H = 24.0, 72.0


@dataclass(frozen=True)
class Facts:
    """What is known of a deployment before it starts."""

    at: datetime
    """When it would start, in the environment's time zone (aware)."""
    files_changed: int | None = None
    """Since the deployed revision; None when unknown (a first deploy, a rewritten history)."""
    lines_changed: int | None = None
    size_unknown: str = ""
    """Why the change's size is unknown, when it is (empty: no deployed revision)."""
    sensitive_files: tuple[str, ...] = ()
    """The changed files that match the project's `risk.sensitive_paths`."""
    coverage_delta: float | None = None
    """Line coverage of its run minus the deployed revision's, in points."""
    allowed_failures: tuple[str, ...] = ()
    """Jobs of its run that failed but were allowed to."""
    recent_failures: int = 0
    recent_deployments: int = 0
    """Of the service's last 30 deployments to this environment, how many were rolled
    back or aborted, and how many there were."""
    hours_to_freeze: float | None = None
    """Until the next freeze window of the environment starts (None: none ahead)."""
    runs_migrations: bool = False


@dataclass(frozen=True)
class Factor:
    name: str
    value: str
    """What was found, in words."""
    weight: int
    share: float
    """0 to 1: how much of the weight it adds."""

    @property
    def contribution(self) -> float:
        return round(self.weight * self.share, 1)


@dataclass(frozen=True)
class Risk:
    score: int
    factors: list[Factor] = field(default_factory=list)

    def explain(self) -> list[str]:
        """One line per factor: name, value, weight and contribution."""
        return [
            f"{f.name}: {f.value} (weight {f.weight}, adds {f.contribution:g})"
            for f in self.factors
        ]


def _log_share(value: int, floor: int, full: int) -> float:
    if value <= floor:
        return 0.0
    return min(1.0, math.log(value / floor) / math.log(full / floor))


def _size(facts: Facts) -> Factor:
    if facts.files_changed is None or facts.lines_changed is None:
        why = facts.size_unknown or "no deployed revision to compare"
        return Factor("change size", f"unknown ({why})", SIZE_W, 0.5)
    share = max(
        _log_share(facts.lines_changed, FLOOR_LINES, FULL_LINES),
        _log_share(facts.files_changed, FLOOR_FILES, FULL_FILES),
    )
    value = f"{facts.files_changed} files, {facts.lines_changed} lines"
    return Factor("change size", value, SIZE_W, share)


def _sensitive(facts: Facts) -> Factor:
    found = facts.sensitive_files
    if not found:
        return Factor("sensitive paths", "none changed", SENSITIVE_W, 0.0)
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return Factor("sensitive paths", shown, SENSITIVE_W, min(1.0, len(found) / 2))


def _coverage(facts: Facts) -> Factor:
    delta = facts.coverage_delta
    if delta is None:
        return Factor("coverage", "not reported", COVERAGE_W, 0.0)
    share = min(1.0, max(0.0, -delta) / FULL_COVERAGE_DROP)
    return Factor("coverage", f"{delta:+.1f} points", COVERAGE_W, share)


def _allowed(facts: Facts) -> Factor:
    failed = facts.allowed_failures
    if not failed:
        return Factor("allowed failures", "none", ALLOWED_W, 0.0)
    return Factor("allowed failures", ", ".join(failed), ALLOWED_W, min(1.0, len(failed) / 2))


def _recent(facts: Facts) -> Factor:
    if facts.recent_deployments == 0:
        return Factor("recent failures", "no deployments yet", RECENT_W, 0.0)
    rate = facts.recent_failures / facts.recent_deployments
    value = f"{facts.recent_failures} of the last {facts.recent_deployments} ({rate:.0%})"
    return Factor("recent failures", value, RECENT_W, min(1.0, rate / FULL_FAILURE_RATE))


def _timing(facts: Facts) -> Factor:
    at = facts.at
    reasons: list[tuple[float, str]] = []
    weekday = at.weekday()
    if weekday >= 5:
        reasons.append((1.0, "at the weekend"))
    elif not WORK_STARTS <= at.hour < WORK_ENDS:
        reasons.append((1.0, "outside working hours"))
    elif weekday == 4 and at.hour >= FRIDAY_LATE:
        reasons.append((0.5, "on a Friday afternoon"))
    ahead = facts.hours_to_freeze
    if ahead is not None and ahead < NEAR_FREEZE_H:
        reasons.append((1.0, f"{ahead:.0f} h before a freeze"))
    elif ahead is not None and ahead < SOON_FREEZE_H:
        reasons.append((0.5, f"{ahead:.0f} h before a freeze"))
    when = at.strftime("%a %H:%M")
    if not reasons:
        return Factor("timing", f"{when}, working hours", TIMING_W, 0.0)
    share = max(share for share, _ in reasons)
    return Factor("timing", f"{when}, " + ", ".join(r for _, r in reasons), TIMING_W, share)


def _migrations(facts: Facts) -> Factor:
    if facts.runs_migrations:
        return Factor("migrations", "pre_deploy runs migrations", MIGRATIONS_W, 1.0)
    return Factor("migrations", "none", MIGRATIONS_W, 0.0)


def score(facts: Facts) -> Risk:
    """The score and every factor behind it."""
    factors = [
        _size(facts),
        _sensitive(facts),
        _coverage(facts),
        _allowed(facts),
        _recent(facts),
        _timing(facts),
        _migrations(facts),
    ]
    total = sum(f.weight * f.share for f in factors)
    return Risk(min(100, round(total)), factors)


MIGRATION_WORDS = ("migrate", "migration", "alembic", "flyway", "liquibase")


def runs_migrations(commands: list[str]) -> bool:
    """Whether `pre_deploy` commands look like schema migrations."""
    return any(word in command.lower() for command in commands for word in MIGRATION_WORDS)
