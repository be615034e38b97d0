"""Freeze windows: a cron start plus a duration, in a time zone (docs/policy.md, "Freeze
windows"). Pure: whether a moment is inside a window, and how long until the next one.

Times are the window's wall clock: `0 18 * * 5` with 62 h in Europe/Berlin is Friday
18:00 to Monday 08:00 there, whatever the UTC offsets on either side (a DST change in
between moves the end by an hour in UTC, not on the wall). A start that falls in the
hour skipped by a change to summer time begins as the clock leaves it; one in the hour
repeated by a change to winter time begins at its first occurrence. A window may cross
midnight, or be longer than its period (the windows then overlap into one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

MAX_DURATION = timedelta(days=31)


class WindowError(ValueError):
    """A window that cannot be: its cron, duration or time zone."""


@dataclass(frozen=True)
class Window:
    cron: str
    """Five fields, minute first: when it starts, on the wall clock of `tz`."""
    duration: timedelta
    tz: str = "UTC"
    """An IANA time zone name."""

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron) or len(self.cron.split()) != 5:
            raise WindowError(f"cron {self.cron!r}: five fields, minute hour day month weekday")
        try:
            croniter(self.cron, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError as exc:  # `0 0 31 2 *`: February has no 31st
            raise WindowError(f"cron {self.cron!r} names a day that never comes") from exc
        if not timedelta(minutes=1) <= self.duration <= MAX_DURATION:
            raise WindowError("duration: from one minute to 31 days")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise WindowError(f"time zone {self.tz!r} is not an IANA name") from exc

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def _wall(self, moment: datetime) -> datetime:
        """A moment (aware) as the window's naive wall-clock time."""
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def _instant(self, wall: datetime) -> datetime:
        """A naive wall-clock time of the window as a moment in UTC (its first occurrence).
        In UTC, because Python compares and subtracts two times of one zone by their wall
        clocks, which a DST change makes wrong."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if first.astimezone(self.zone).replace(tzinfo=None) == wall:
            return first  # it exists (in a repeated hour: its first occurrence)
        # In the hour skipped by a change to summer time: the moment the clock jumps,
        # between the readings with the offsets before (later) and after (earlier) it.
        before, after = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC), first
        jumped = after.astimezone(self.zone).utcoffset()
        while after - before > timedelta(seconds=1):
            middle = before + (after - before) / 2
            if middle.astimezone(self.zone).utcoffset() == jumped:
                after = middle
            else:
                before = middle
        return after.replace(microsecond=0)

    def last_start(self, at: datetime) -> datetime:
        """The wall-clock time of the latest start at or before `at`."""
        wall = self._wall(at)
        start: datetime = croniter(self.cron, wall + timedelta(seconds=1)).get_prev(datetime)
        if start > wall:
            start = croniter(self.cron, start).get_prev(datetime)
        return start

    def containing(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence (start, end, in UTC) that `at` falls in, or None. Only the latest
        start can hold it: an earlier one ends no later."""
        start = self.last_start(at)
        begins, ends = self._instant(start), self._instant(start + self.duration)
        return (begins, ends) if begins <= at < ends else None

    def next_start(self, at: datetime) -> datetime:
        """The first start after `at` (in UTC)."""
        wall = self._wall(at)
        nxt: datetime = croniter(self.cron, wall).get_next(datetime)
        return self._instant(nxt)


def frozen(windows: list[Window], at: datetime) -> tuple[Window, datetime] | None:
    """The window `at` falls in, with when it ends (the latest end if several), or None."""
    found = [(w, hit[1]) for w in windows if (hit := w.containing(at)) is not None]
    return max(found, key=lambda pair: pair[1]) if found else None


def hours_until(windows: list[Window], at: datetime) -> float | None:
    """Hours until the next window starts: 0 inside one, None with no windows."""
    if not windows:
        return None
    if frozen(windows, at) is not None:
        return 0.0
    soonest = min(w.next_start(at) for w in windows)
    return max(0.0, (soonest - at).total_seconds() / 3600)
