"""domain.freeze: windows on the wall clock of their time zone, across midnight, across
DST changes both ways, longer than their period; and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conveyor.domain.freeze import Window, WindowError, frozen, hours_until

BERLIN = ZoneInfo("Europe/Berlin")
WEEKEND = Window("0 18 * * 5", timedelta(hours=62), "Europe/Berlin")  # Fri 18:00 → Mon 08:00
NIGHTS = Window("0 22 * * *", timedelta(hours=8), "Europe/Berlin")  # 22:00 → 06:00


def at(y: int, m: int, d: int, hh: int, mm: int = 0, tz: ZoneInfo = BERLIN) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (at(2026, 12, 11, 17, 59), False),  # Friday, a minute before
        (at(2026, 12, 11, 18, 0), True),  # its first minute
        (at(2026, 12, 13, 12, 0), True),  # Sunday
        (at(2026, 12, 14, 7, 59), True),  # Monday, a minute before the end
        (at(2026, 12, 14, 8, 0), False),  # the end is not in it
        (at(2026, 12, 16, 12, 0), False),  # Wednesday
    ],
)
def test_a_weekend_freeze_on_berlin_s_clock(moment: datetime, inside: bool):
    assert (WEEKEND.containing(moment) is not None) is inside


def test_the_same_moment_given_in_utc_is_judged_on_the_window_s_clock():
    # Friday 17:30 UTC is 18:30 in Berlin in December (UTC+1): inside.
    assert WEEKEND.containing(datetime(2026, 12, 11, 17, 30, tzinfo=UTC)) is not None
    # ...and 16:30 UTC is 17:30 there: not yet.
    assert WEEKEND.containing(datetime(2026, 12, 11, 16, 30, tzinfo=UTC)) is None


def test_a_window_crosses_midnight():
    assert NIGHTS.containing(at(2026, 12, 8, 23, 30)) is not None
    begins, ends = NIGHTS.containing(at(2026, 12, 9, 5, 59)) or (None, None)
    assert (begins, ends) == (at(2026, 12, 8, 22, 0), at(2026, 12, 9, 6, 0))
    assert NIGHTS.containing(at(2026, 12, 9, 6, 0)) is None
    assert NIGHTS.containing(at(2026, 12, 9, 21, 59)) is None


def test_a_repeated_hour_starts_at_its_first_occurrence():
    repeated = Window("30 2 * * *", timedelta(minutes=45), "Europe/Berlin")
    # 2026-10-25: 02:30 happens twice, at 00:30 UTC (summer) and 01:30 UTC (winter).
    held = repeated.containing(datetime(2026, 10, 25, 0, 40, tzinfo=UTC))
    assert held is not None and held[0] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_a_dst_change_inside_a_window_keeps_its_wall_clock_end():
    # Summer time begins Sunday 2026-03-29 at 02:00 (clocks go to 03:00): the weekend
    # window from Friday the 27th still ends Monday 08:00 on the wall, 61 h later in UTC.
    begins, ends = WEEKEND.containing(at(2026, 3, 29, 12, 0)) or (None, None)
    assert begins is not None and ends is not None
    assert ends.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 3, 30, 8, 0)
    assert ends - begins == timedelta(hours=61)
    # Winter time (2026-10-25, 03:00 back to 02:00): 63 h.
    begins, ends = WEEKEND.containing(at(2026, 10, 25, 12, 0)) or (None, None)
    assert begins is not None and ends is not None and ends - begins == timedelta(hours=63)


def test_a_start_in_the_skipped_hour_begins_as_the_clock_leaves_it():
    skipped = Window("30 2 * * *", timedelta(hours=1), "Europe/Berlin")
    # 02:30 does not exist on 2026-03-29: the window runs from the jump (03:00 summer
    # time, 01:00 UTC) to 03:30 on the wall.
    assert skipped.containing(at(2026, 3, 29, 3, 15)) == (
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
    )
    assert skipped.containing(datetime(2026, 3, 29, 0, 59, tzinfo=UTC)) is None
    # On a plain night it runs 02:30 → 03:30.
    assert skipped.containing(at(2026, 3, 30, 2, 45)) is not None
    assert skipped.containing(at(2026, 3, 30, 3, 31)) is None


def test_a_window_longer_than_its_period_holds_all_along():
    always = Window("0 0 * * *", timedelta(hours=30), "UTC")
    for hour in range(0, 48, 5):
        moment = datetime(2026, 12, 8, tzinfo=UTC) + timedelta(hours=hour)
        assert always.containing(moment) is not None


def test_hours_until_the_next_window_and_which_one_holds():
    wednesday_noon = at(2026, 12, 9, 12, 0)
    assert hours_until([WEEKEND, NIGHTS], wednesday_noon) == 10.0  # tonight at 22:00
    assert hours_until([WEEKEND], wednesday_noon) == 54.0  # Friday 18:00
    assert hours_until([NIGHTS], at(2026, 12, 9, 23, 0)) == 0.0
    assert hours_until([], wednesday_noon) is None
    held = frozen([NIGHTS, WEEKEND], at(2026, 12, 11, 23, 0))
    assert held is not None and held[0] is WEEKEND  # the one that ends last
    assert held[1] == at(2026, 12, 14, 8, 0)


@pytest.mark.parametrize(
    ("cron", "duration", "tz", "says"),
    [
        ("0 18 * *", timedelta(hours=1), "UTC", "five fields"),
        ("61 18 * * *", timedelta(hours=1), "UTC", "five fields"),
        ("0 18 * * 5", timedelta(seconds=30), "UTC", "one minute to 31 days"),
        ("0 18 * * 5", timedelta(days=40), "UTC", "one minute to 31 days"),
        ("0 18 * * 5", timedelta(hours=1), "Mars/Olympus", "not an IANA name"),
    ],
)
def test_a_window_that_cannot_be_is_refused_saying_why(cron, duration, tz, says):
    with pytest.raises(WindowError, match=says):
        Window(cron, duration, tz)
