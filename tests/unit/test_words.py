"""How the UI says times, durations, sizes, analysis values and a driver's actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.ui import words

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("before", "said"),
    [
        (timedelta(seconds=3), "just now"),
        (timedelta(seconds=42), "42 s ago"),
        (timedelta(minutes=5, seconds=59), "5 min ago"),
        (timedelta(hours=1), "1 hour ago"),
        (timedelta(hours=5), "5 hours ago"),
        (timedelta(days=1, hours=3), "yesterday"),
        (timedelta(days=12), "12 days ago"),
        (timedelta(days=40), "on 2026-10-28"),
        (timedelta(seconds=-90), "in 1m 30s"),
    ],
)
def test_times_in_words(before: timedelta, said: str):
    assert words.ago(NOW - before, NOW) == said


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.42, "0.4 s"),
        (42, "42 s"),
        (65, "1m 05s"),
        (7380, "2h 03m"),
        (3 * 86400 + 4 * 3600, "3d 4h"),
    ],
)
def test_durations(seconds: float, said: str):
    assert words.span(seconds) == said


def test_a_time_says_the_exact_moment_on_hover_and_a_duration_runs_on():
    shown = str(words.when("2026-12-07T11:58:00+00:00", NOW))
    assert shown == (
        '<time datetime="2026-12-07T11:58:00+00:00" title="2026-12-07 11:58:00 UTC">'
        "2 min ago</time>"
    )
    assert "-" in str(words.when(None)) and words.parse("") is None
    assert words.took("2026-12-07T11:58:00+00:00", "2026-12-07T11:59:05+00:00") == "1m 05s"
    assert words.took("2026-12-07T11:58:00", None, NOW) == "2m 00s so far"
    assert words.took(None, None) == ""


def test_sizes_and_analysis_values_with_their_units():
    assert [words.size(n) for n in (812, 4300, 64_000_000)] == ["812 B", "4.2 KiB", "61.0 MiB"]
    assert words.measured(0.0, "ratio") == "0.00%"  # it said `0ratio`
    assert words.measured(22_160_000, "bytes") == "21.1 MiB"  # it said `2.216e+07bytes`
    assert words.measured(212.04, "ms") == "212.0 ms"
    assert words.measured(None, "ms") == "-"
    assert words.measured(3.0, "") == "3"


def test_a_driver_s_actions_in_words():
    assert words.describe("split", {"share": 2000}) == "send 20.0% of the traffic to the canary"
    digest = "sha256:" + "ab" * 32
    assert words.describe("start", {"digest": digest, "slot": "b", "port": 31002}) == (
        "start an instance of abababababab in slot b on port 31002"
    )
    assert words.describe("drain", {"instance": "0193abcd-ef", "reason": "replaced"}) == (
        "drain instance 0193abcd (replaced)"
    )
    assert words.describe("advance", {"step": 1}) == "go to step 2"
    assert words.describe("finish", {"phase": "aborted", "reason": "error rate"}) == (
        "the deployment ends aborted (error rate)"
    )
    assert words.describe("mystery", {"act": "mystery", "x": 1}) == "mystery x=1"


def test_who_started_a_deployment_without_the_run_s_id():
    assert words.starter("job deploy-production of run 0193-ab") == "job deploy-production"
    assert words.starter("token 'ci' (developer)") == "token 'ci' (developer)"
