"""Rollouts judged by their metrics against the real things: a `conveyor serve`, the
HAProxy it starts (whose request log the router provider reads), the example service as
real processes, and a real load over loopback.

Given v1 serving under load, when v2 goes out as a canary whose conveyor.yml judges it,
then a healthy v2 passes its analysis and is promoted by itself, and a v2 that fails
every request is detected within seconds, aborted (its traffic back to 0 %) and pinned,
with only the requests the canary served failing.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.deploy.conftest import QUOTE, Stack, load
from tests.monitoring import alertmanager

ANALYSIS = """\
analysis:
  templates:
    health:
      interval: 1s
      min_samples: 50
      metrics:
        - {name: error-rate, max: 5%, compare: stable, max_ratio: 2}
        - {name: p99, quantile: 0.99, max: 500ms}
"""
JOBS = """\
  ship:
    deploy:
      environment: production
      strategy:
        canary:
          steps: [{weight: 10}, {analysis: health, for: 8s}, {weight: 100}]
"""


def serving_v1(stack: Stack) -> str:
    v1 = stack.upload("v1")
    first = stack.deploy("production", v1)
    stack.wait_phase("production", first["number"], {"succeeded"})
    return str(stack.status("production")["url"]) + QUOTE


def analysis_of(stack: Stack, deployment_id: str) -> dict:  # type: ignore[type-arg]
    found = stack.api("GET", f"/api/v1/deployments/{deployment_id}/analysis")
    assert found.status_code == 200, found.text
    return dict(found.json())


def test_a_healthy_canary_passes_its_analysis_and_is_promoted(stack: Stack):
    url = serving_v1(stack)
    v2 = stack.upload("v2", extra=ANALYSIS, jobs=JOBS)
    with load(url, keepalive=True, rate=200) as running:
        made = stack.deploy("production", v2)
        assert made["steps"] == ["weight 10%", "analysis health for 8s", "weight 100%"]
        done = stack.wait_phase("production", made["number"], {"succeeded"}, timeout=90)
    assert running.result["failed"] == 0, json.dumps(running.result, indent=2)
    assert done["message"] == "promoted"
    (run,) = analysis_of(stack, made["id"])["runs"]
    # The instances run on the coordinator's machine through its embedded agent, which
    # reported them: one host.
    passed = ("step-1", "passed", "every metric passed (seen on 1 host)")
    assert (run["key"], run["phase"], run["reason"]) == passed
    latest = {j["metric"]: j for j in run["latest"]}
    assert latest["error-rate"]["verdict"] == "pass" and latest["p99"]["verdict"] == "pass"
    # About 10 % of 200 req/s for 8 s went to the canary, the rest to stable.
    assert 50 <= latest["error-rate"]["samples"]["canary"] <= 400
    assert latest["error-rate"]["samples"]["stable"] > latest["error-rate"]["samples"]["canary"]
    assert run["evaluations"] >= 7 and run["history"][-1]["measurements"]


def test_a_failing_canary_is_rolled_back_within_seconds_and_pinned(stack: Stack):
    url = serving_v1(stack)
    v2 = stack.upload("v2", extra=ANALYSIS, jobs=JOBS, PAYMENTS_FAIL_RATE="1")
    with load(url, keepalive=True, rate=200) as running:
        made = stack.deploy("production", v2)
        ended = stack.wait_phase("production", made["number"], {"aborted"}, timeout=90)
        assert stack.status("production")["traffic"]["canary"] == 0.0
        after = [httpx.get(url).json()["version"] for _ in range(20)]
    assert set(after) == {"v1"}
    assert ended["message"].startswith("analysis health failed: error-rate: the canary")
    result = running.result
    # Only the canary failed requests (v1 never answers 500), and only for a moment:
    # 10 % of 200 req/s, until the first evaluation that saw them.
    assert set(result["statuses"]) == {"200", "500"}, result
    assert 0 < result["failed"] == result["statuses"]["500"] <= 200, result
    assert result["failures_until_s"] - result["failures_from_s"] < 10, result
    status = stack.status("production")
    assert [p["reason"] for p in status["pins"]] == [ended["message"]]
    (run,) = analysis_of(stack, made["id"])["runs"]
    assert run["phase"] == "failed" and run["failures"] == {"error-rate": 1}
    failed = next(j for j in run["latest"] if j["metric"] == "error-rate")
    assert failed["verdict"] == "fail" and failed["canary"] == 1.0 and failed["stable"] == 0.0
    assert failed["log_bayes_factor"] >= 6.9 and failed["samples"]["canary"] >= 1
    # People read it with `conveyor analysis` and `conveyor status`.
    text = stack.cli("analysis", "a/pay", "--env", "production").stdout
    assert "step-1 health for 8s: failed" in text and "error-rate" in text
    followed = stack.cli("analysis", "a/pay", "--env", "production", "-f").stdout.splitlines()
    assert "step-1" in followed[0] and "error-rate fail" in followed[-2]
    assert followed[-1].startswith("aborted: analysis health failed")
    data = json.loads(stack.cli("analysis", "a/pay", "--env", "production", "--json").stdout)
    assert data["deployment"]["number"] == 2 and data["runs"][0]["history"]
    assert "revision 2 aborted: analysis health failed" in stack.cli(
        "status", "a/pay", "--env", "production"
    ).stdout.replace("\n", " ")


def test_the_analysis_of_an_unknown_deployment_is_not_found(stack: Stack):
    missing = stack.api("GET", "/api/v1/deployments/0190a0a0-0000-7000-8000-000000000000/analysis")
    assert missing.status_code == 404 and "no deployment" in missing.json()["detail"]


ALERTING = """\
analysis:
  templates:
    paged:
      interval: 1s
      metrics:
        - {name: paged, provider: alert}
"""
PAGED_JOBS = JOBS.replace("analysis: health, for: 8s", "analysis: paged, for: 60s")


def alertmanager_config(stack: Stack, token: str) -> str:
    return (
        "route:\n"
        "  receiver: conveyor\n"
        "  group_by: [alertname]\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: conveyor\n"
        "    webhook_configs:\n"
        f"      - url: {stack.url}/hooks/alertmanager/a/pay\n"
        "        send_resolved: true\n"
        "        http_config:\n"
        f"          authorization: {{type: Bearer, credentials: {token}}}\n"
    )


def test_an_alert_from_alertmanager_fails_the_canary_at_once(stack: Stack, tmp_path: Path):
    url = serving_v1(stack)
    token = stack.cli("token", "create", "--team", "a", "--name", "am", "--role", "developer")
    v2 = stack.upload("v2", extra=ALERTING, jobs=PAGED_JOBS)
    with (
        alertmanager(
            tmp_path / "alertmanager", alertmanager_config(stack, token.stdout.strip())
        ) as am,
        load(url, keepalive=True, rate=100) as running,
    ):
        made = stack.deploy("production", v2)
        stack.wait_step("production", "analysis paged")
        time.sleep(2)  # judged healthy for a while: no alert fires yet
        assert stack.deployment("production", made["number"])["phase"] == "progressing"
        began = time.monotonic()
        sent = httpx.post(
            f"{am}/api/v2/alerts",
            json=[
                {
                    "labels": {"alertname": "PaymentsDown", "conveyor_environment": "production"},
                    "annotations": {"summary": "payments are failing"},
                    "startsAt": datetime.now(UTC).isoformat(),
                }
            ],
        )
        assert sent.status_code == 200, sent.text
        ended = stack.wait_phase("production", made["number"], {"aborted"}, timeout=30)
        reacted = time.monotonic() - began
    assert running.result["failed"] == 0
    assert ended["message"] == (
        "analysis paged failed: paged: 1 is above 0 (firing: PaymentsDown)"
    ), ended["message"]
    assert reacted < 10, reacted  # Alertmanager's group_wait 0 s, then the next evaluation
    assert stack.status("production")["traffic"]["canary"] == 0.0


FAILING_CHECK = """\
  pre_deploy:
    - echo checking the configuration
    - {command: "echo 'DATABASE_URL is not set' >&2; exit 3", timeout: 10s}
"""


def test_a_failing_pre_deploy_check_aborts_before_any_request_reaches_the_revision(
    stack: Stack,
):
    url = serving_v1(stack)
    v2 = stack.upload("v2", extra=FAILING_CHECK)
    with load(url, keepalive=True, rate=100) as running:
        made = stack.deploy("production", v2, strategy="canary", steps="50,pause")
        ended = stack.wait_phase("production", made["number"], {"aborted"}, timeout=60)
    assert ended["message"].startswith(
        "pre_deploy `echo 'DATABASE_URL is not set' >&2; exit 3` failed (exit 3):"
    )
    assert ended["message"].endswith("DATABASE_URL is not set"), ended["message"]
    assert "$ echo checking the configuration" in ended["message"]
    assert running.result["failed"] == 0 and set(running.result["versions"]) == {"v1"}
    status = stack.status("production")
    assert {i["revision"] for i in status["instances"]} == {1}
    assert status["pins"] == []  # a check that failed is not the artifact's fault alone
