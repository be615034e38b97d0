"""The shipped alert rules pass promtool's checks and their unit tests
(deploy/prometheus/alerts_test.yml): every alert fires on the series that should fire
it, with the summary it should say, and stays quiet otherwise."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.monitoring import require_tool

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def test_the_alert_rules_are_valid_and_their_unit_tests_pass():
    promtool = require_tool("promtool", "prometheus")
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
