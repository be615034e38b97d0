"""Durations as people write them in CI files: `90s`, `10m`, `1h30m`, `1h 30m`, `2d`, or a
bare number of seconds."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))+\s*$")


def parse_duration(value: object) -> float:
    """Return the duration in seconds. Raises ValueError with a readable message."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30s', '10m' or '1h30m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value)
    if not isinstance(value, str) or not _WHOLE.match(value):
        raise ValueError(f"expected a duration like '30s', '10m' or '1h30m', got {value!r}")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value))


def format_duration(seconds: float) -> str:
    """Short human form: 0.42s, 12.3s, 4m05s, 1h02m."""
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
