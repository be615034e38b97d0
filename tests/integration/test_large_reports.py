"""A 100 MB JUnit file is parsed with flat memory (a child process measures its own RSS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from junit_parse import CHILD, write_junit


@pytest.mark.slow
def test_100_mb_junit_file_needs_little_memory(tmp_path):
    path = tmp_path / "junit.xml"
    cases = write_junit(path, 100)
    assert path.stat().st_size >= 100_000_000
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
    )
    child = json.loads(done.stdout)
    assert child["cases"] == cases
    assert child["failed"] == cases // 100
    growth_mib = (child["peak_rss_kib"] - child["baseline_rss_kib"]) / 1024
    assert growth_mib < 50, f"parsing grew RSS by {growth_mib:.0f} MiB"
