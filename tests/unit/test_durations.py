from __future__ import annotations

import pytest

from conveyor.pipeline.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("2d", 172800),
        ("250ms", 0.25),
        (45, 45),
        (1.5, 1.5),
        ("1.5h", 5400),
    ],
)
def test_parses(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "ten minutes", "10", "10x", "-5s", True, None, [1], -3])
def test_rejects(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.42, "0.42s"), (12.34, "12.3s"), (245, "4m05s"), (3720, "1h02m")]
)
def test_formats(seconds, text):
    assert format_duration(seconds) == text
