"""DORA's four keys and their bands on a history worked out by hand, with no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.domain.dora import Band, Change, figures, frequency_band

T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)


def change(number: int, at_h: float, **kw: object) -> Change:
    finished = T0 + at_h * H
    defaults: dict[str, object] = {
        "project": "api",
        "number": number,
        "succeeded": True,
        "started_at": finished - timedelta(minutes=10),
        "finished_at": finished,
    }
    return Change(**(defaults | kw))  # type: ignore[arg-type]


def test_a_worked_history():
    history = [
        # 1: committed 2 h before it succeeded; 2: 6 h; 3: 30 h (then rolled back 30 min
        # after it went live); 4: its commit time is unknown; 5: committed "after" it
        # succeeded (clock skew, an automated change): left out of the lead time.
        change(1, 10, committed_at=T0 + 8 * H),
        change(2, 20, committed_at=T0 + 14 * H),
        change(3, 40, committed_at=T0 + 10 * H, recovered_at=T0 + 40.5 * H),
        change(4, 50),
        change(5, 60, committed_at=T0 + 61 * H),
        # 6: aborted by its analysis 4 minutes into its canary: a failure, recovered then.
        change(
            6,
            70,
            succeeded=False,
            aborted_by_rule=True,
            started_at=T0 + 70 * H - timedelta(minutes=4),
        ),
        # 7: aborted by a person: it did not change production, it does not count.
        change(7, 80, succeeded=False),
    ]
    found = figures(history, days=10)
    assert found.deployments == 5 and found.per_day == 0.5
    assert (found.lead_time_s, found.lead_times) == (6 * 3600, 3)  # median of 2 h, 6 h, 30 h
    assert (found.changes, found.failures, found.failure_rate) == (6, 2, 2 / 6)
    # Recoveries: 30 min (3, rolled back) and 4 min (6, aborted): median 17 min.
    assert (found.recovery_s, found.recoveries) == (17 * 60, 2)
    assert found.bands == {
        "deployment_frequency": Band.HIGH,  # between daily and weekly
        "lead_time": Band.ELITE,  # under a day
        "change_failure_rate": Band.LOW,  # over 15 %
        "recovery": Band.ELITE,  # under an hour
    }
    assert found.band is Band.LOW


def test_no_deployments_is_no_figure_rather_than_a_good_one():
    found = figures([], days=30)
    assert (found.deployments, found.lead_time_s, found.failure_rate, found.recovery_s) == (
        0,
        None,
        None,
        None,
    )
    assert found.bands["deployment_frequency"] is Band.LOW and found.band is Band.LOW


def test_frequency_bands():
    assert [frequency_band(x) for x in (3, 1, 0.2, 1 / 7, 0.05, 1 / 30, 0.01)] == [
        Band.ELITE,
        Band.ELITE,
        Band.HIGH,
        Band.HIGH,
        Band.MEDIUM,
        Band.MEDIUM,
        Band.LOW,
    ]
