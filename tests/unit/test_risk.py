"""domain.risk: each factor's share, hand-computed, and the score they add up to."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from conveyor.domain import risk

BERLIN = ZoneInfo("Europe/Berlin")
TUESDAY_11 = datetime(2026, 12, 8, 11, 0, tzinfo=BERLIN)


def _factor(found: risk.Risk, name: str) -> risk.Factor:
    return next(f for f in found.factors if f.name == name)


def test_a_small_change_in_working_hours_scores_zero():
    found = risk.score(risk.Facts(at=TUESDAY_11, files_changed=1, lines_changed=8))
    assert found.score == 0
    assert [f.name for f in found.factors] == [
        "change size",
        "sensitive paths",
        "coverage",
        "allowed failures",
        "recent failures",
        "timing",
        "migrations",
    ]
    assert sum(f.weight for f in found.factors) == 100
    assert found.explain()[0] == "change size: 1 files, 8 lines (weight 20, adds 0)"
    assert found.explain()[5] == "timing: Tue 11:00, working hours (weight 15, adds 0)"


@pytest.mark.parametrize(
    ("files", "lines", "share"),
    [
        (2, 10, 0.0),
        (2, 100, 0.5),  # log10(100/10) / log10(1000/10)
        (2, 1000, 1.0),
        (2, 50_000, 1.0),
        (10, 10, 0.5),  # ln(10/2) / ln(50/2)
        (50, 20, 1.0),
    ],
)
def test_change_size_grows_on_a_log_scale(files: int, lines: int, share: float):
    found = risk.score(risk.Facts(at=TUESDAY_11, files_changed=files, lines_changed=lines))
    assert _factor(found, "change size").share == pytest.approx(share, abs=1e-9)


def test_an_unknown_diff_counts_half():
    found = risk.score(risk.Facts(at=TUESDAY_11))
    size = _factor(found, "change size")
    assert (size.share, size.contribution, found.score) == (0.5, 10.0, 10)


def test_every_factor_at_full_weight_scores_a_hundred():
    facts = risk.Facts(
        at=datetime(2026, 12, 12, 23, 30, tzinfo=BERLIN),  # a Saturday night
        files_changed=80,
        lines_changed=4000,
        sensitive_files=("migrations/0042_fees.sql", "src/payments/ledger.py", "x", "y"),
        coverage_delta=-7.5,
        allowed_failures=("lint", "e2e-flaky"),
        recent_failures=9,
        recent_deployments=30,
        hours_to_freeze=3.0,
        runs_migrations=True,
    )
    found = risk.score(facts)
    assert found.score == 100
    assert all(f.share == 1.0 for f in found.factors)
    assert _factor(found, "sensitive paths").value == (
        "migrations/0042_fees.sql, src/payments/ledger.py, x and 1 more"
    )
    assert _factor(found, "timing").value == "Sat 23:30, at the weekend, 3 h before a freeze"


def test_a_hand_computed_middle_score():
    facts = risk.Facts(
        at=datetime(2026, 12, 11, 16, 0, tzinfo=BERLIN),  # Friday 16:00: half
        files_changed=4,
        lines_changed=100,  # 0.5 of 20 = 10
        sensitive_files=("migrations/0042.sql",),  # 0.5 of 20 = 10
        coverage_delta=-1.0,  # 0.2 of 10 = 2
        allowed_failures=("lint",),  # 0.5 of 10 = 5
        recent_failures=3,
        recent_deployments=20,  # 15 % of 30 %: 0.5 of 15 = 7.5
        hours_to_freeze=None,  # Friday afternoon: 0.5 of 15 = 7.5
        runs_migrations=False,
    )
    found = risk.score(facts)
    assert [f.contribution for f in found.factors] == [10.0, 10.0, 2.0, 5.0, 7.5, 7.5, 0.0]
    assert found.score == 42
    assert _factor(found, "coverage").value == "-1.0 points"
    assert _factor(found, "recent failures").value == "3 of the last 20 (15%)"


def test_a_coverage_rise_adds_nothing_and_a_freeze_two_days_away_adds_half():
    facts = risk.Facts(at=TUESDAY_11, coverage_delta=+3.0, hours_to_freeze=48.0)
    found = risk.score(facts)
    assert _factor(found, "coverage").share == 0.0
    timing = _factor(found, "timing")
    assert (timing.share, timing.value) == (0.5, "Tue 11:00, 48 h before a freeze")


@pytest.mark.parametrize(("hour", "share"), [(7, 1.0), (8, 0.0), (17, 0.0), (18, 1.0), (2, 1.0)])
def test_working_hours_are_the_environment_s(hour: int, share: float):
    at = datetime(2026, 12, 8, hour, 0, tzinfo=BERLIN)
    assert _factor(risk.score(risk.Facts(at=at)), "timing").share == share


def test_migrations_are_recognised_in_pre_deploy_commands():
    assert risk.runs_migrations(["python manage.py migrate --noinput"])
    assert risk.runs_migrations(["alembic upgrade head"])
    assert not risk.runs_migrations(["./warm-cache.sh", "echo ready"])
    assert not risk.runs_migrations([])


def test_an_unknown_size_says_why():
    """Issue 19 §1.8: it said `no deployed revision` when the artifact had no commit."""
    from conveyor.policy.risk import _size_unknown
    from conveyor.storage.tables import Artifact

    deployed, no_commit = Artifact(sha="a" * 40), Artifact(sha=None)
    assert _size_unknown(None, no_commit) == ""  # the factor says: no deployed revision
    assert _size_unknown(deployed, no_commit) == "the artifact names no commit"
    assert _size_unknown(no_commit, deployed) == "the deployed revision names no commit"
    assert _size_unknown(deployed, deployed) == "the project has no repository to compare in"
    facts = risk.Facts(at=TUESDAY_11, size_unknown="the artifact names no commit")
    (size,) = [f for f in risk.score(facts).factors if f.name == "change size"]
    assert size.value == "unknown (the artifact names no commit)"
