"""Fair share between teams: pure functions, no database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from conveyor.domain.fair_share import TeamQueue, eligible, fair_order, needs_turns, under_quota

T0 = datetime(2026, 12, 1, tzinfo=UTC)
A, B, C = (uuid.UUID(int=n) for n in (1, 2, 3))


def q(team: uuid.UUID, waited_s: int = 0, quota: int | None = None) -> TeamQueue:
    return TeamQueue(team, T0 - timedelta(seconds=waited_s), quota)


def names(order: list[TeamQueue]) -> list[uuid.UUID]:
    return [t.team_id for t in order]


def test_fewer_running_jobs_go_first():
    order = fair_order([q(A), q(B), q(C)], {A: 3, B: 1, C: 2}, {})
    assert names(order) == [B, C, A]


def test_a_team_never_served_goes_before_one_that_was():
    served = {A: T0 - timedelta(hours=1), B: None}
    assert names(fair_order([q(A, 100), q(B)], {}, served)) == [B, A]


def test_among_served_teams_the_one_served_least_recently_goes_first():
    served = {A: T0 - timedelta(seconds=5), B: T0 - timedelta(seconds=50)}
    assert names(fair_order([q(A), q(B)], {}, served)) == [B, A]


def test_a_team_with_a_long_queue_does_not_starve_another():
    # A has queued for an hour and just got a job started; B's one job came now.
    served = {A: T0, B: None}
    assert names(fair_order([q(A, 3600), q(B)], {A: 0, B: 0}, served)) == [B, A]


def test_ties_go_to_the_oldest_waiting_job():
    assert names(fair_order([q(A, 1), q(B, 9)], {}, {})) == [B, A]


def test_quotas():
    assert under_quota(1, None) and under_quota(1, 2)
    assert not under_quota(2, 2)
    assert names(eligible([q(A, quota=2), q(B, quota=5), q(C)], {A: 2, B: 4})) == [B, C]


def test_turns_are_needed_between_teams_or_for_a_quota_only():
    assert not needs_turns([q(A)])
    assert needs_turns([q(A, quota=1)])
    assert needs_turns([q(A), q(B)])
    assert not needs_turns([])
