"""Deployment policy against the real components (a `conveyor serve`, a runner, git,
HAProxy, the example service's processes): a pipeline's production deploy job waits
`blocked` for a maintainer's approval and ships when it comes; a freeze window queues a
deploy and releases it when the window ends; an emergency rollback passes a freeze."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.api.conftest import repo_with
from tests.deploy.conftest import EXAMPLE, QUOTE, Stack
from tests.helpers import conveyor, process, wait_until

PIPELINE = """\
version: 1
service: payments-api
team: a
environments:
  production: {required_approvals: 1, approver_role: maintainer}
jobs:
  package:
    script: ["python3 -m compileall -q payments"]
    artifacts: {paths: [conveyor.yml, payments/]}
  deploy-staging:
    needs: [package]
    deploy: {environment: staging, strategy: rolling}
  deploy-production:
    needs: [package, deploy-staging]
    deploy: {environment: production, strategy: rolling}
runtime:
  command: python3 -m payments.app --port $PORT
  replicas: 1
  health: {path: /healthz, start_period: 3s}
  drain: 1s
  env: {PAYMENTS_VERSION: approved}
"""


def job_of(stack: Stack, run_id: str, name: str) -> dict[str, Any]:
    run = stack.api("GET", f"/api/v1/runs/{run_id}").json()
    return dict(next(j for j in run["jobs"] if j["name"] == name))


def test_a_production_deploy_job_waits_blocked_for_an_approval_then_ships(
    stack: Stack, tmp_path: Path
):
    source = tmp_path / "svc"
    shutil.copytree(EXAMPLE / "payments", source / "payments")
    repo_with(source, PIPELINE)
    stack.cli("project", "create", "a/svc", "--repo", f"file://{source}")
    maintainer = stack.cli(
        "token", "create", "--team", "a", "--name", "lead", "--role", "maintainer"
    ).stdout.strip()
    registration = stack.cli("runner-token", "create", "--team", "a").stdout.strip()
    runner = conveyor("runner", "--token", registration, "--data-dir", str(tmp_path / "runner"))
    with process(runner, tmp_path / "runner.log", stack.env):
        run = json.loads(stack.cli("trigger", "a/svc", "--ref", "main", "--json").stdout)
        blocked = wait_until(
            lambda: (
                (j := job_of(stack, run["id"], "deploy-production"))["status"] == "blocked" and j
            ),
            120,
            "the production deploy job to wait blocked",
        )
        assert "waits for approval of production revision 1" in blocked["reason"]
        assert job_of(stack, run["id"], "deploy-staging")["status"] == "success"
        # It holds no runner meanwhile, and the deployment waits at its gate.
        waiting = stack.cli("approvals", "--json", "--token", maintainer)
        (item,) = json.loads(waiting.stdout)
        assert (item["project"], item["environment"], item["can_approve"]) == (
            "svc",
            "production",
            True,
        )
        production = stack.api("GET", "/api/v1/projects/a/svc/environments/production").json()
        assert production["revision"] == 0 and production["instances"] == []
        assert production["deployment"]["pause_reason"] == "approval"
        # The table shows the whole id at 80 columns, and approve takes a unique prefix.
        table = stack.cli("approvals", "--token", maintainer).stdout
        assert item["id"] in table, table
        approved = stack.cli(
            "approve", item["id"][:8], "--comment", "ship it", "--token", maintainer
        )
        assert "production revision 1: approved: it starts" in approved.stdout
        finished = wait_until(
            lambda: (
                (r := stack.api("GET", f"/api/v1/runs/{run['id']}").json())["status"]
                in {"success", "failed"}
                and r
            ),
            180,
            "the run to end",
        )
    assert finished["status"] == "success", finished
    status = stack.api("GET", "/api/v1/projects/a/svc/environments/production").json()
    assert status["revision"] == 1
    assert httpx.get(status["url"] + QUOTE).json()["version"] == "approved"
    log = stack.api("GET", f"/api/v1/jobs/{blocked['id']}/log").text
    assert "waits for approval" in log and "production revision 1: succeeded" in log
    entries = stack.api("GET", "/api/v1/teams/a/audit", params={"limit": 500}).json()["items"]
    approval = next(e for e in entries if e["action"] == "approve")
    assert approval["actor"].startswith("token 'lead' (maintainer)")
    assert approval["target"] == "a/svc/production#1"
    assert approval["detail"]["comment"] == "ship it"


def _window_ending_in(seconds: float) -> tuple[str, int]:
    """A cron and a duration (UTC) whose occurrence is in force now and ends `seconds`
    from now: it started in the previous minute (a window lasts a minute at least)."""
    now = datetime.now(UTC)
    start = (now - timedelta(minutes=1)).replace(second=0, microsecond=0)
    end = now + timedelta(seconds=seconds)
    return f"{start.minute} {start.hour} * * *", round((end - start).total_seconds())


def test_a_freeze_queues_a_deploy_and_releases_it_when_the_window_ends(stack: Stack):
    v1 = stack.upload("v1")
    stack.wait_phase("staging", stack.deploy("staging", v1)["number"], {"succeeded"})
    cron, seconds = _window_ending_in(12)
    window = stack.api(
        "POST",
        "/api/v1/projects/a/pay/freezes",
        json={"cron": cron, "duration": f"{seconds}s", "environment": "staging"},
    )
    assert window.status_code == 201, window.text
    ends = datetime.fromisoformat(window.json()["active_until"])
    v2 = stack.upload("v2")
    queued = stack.deploy("staging", v2)
    held = stack.wait_phase("staging", queued["number"], {"paused"})
    assert held["pause_reason"] == "freeze" and "a freeze window holds it" in held["message"]
    assert stack.status("staging")["revision"] == 1
    done = stack.wait_phase("staging", queued["number"], {"succeeded"}, timeout=90)
    assert datetime.fromisoformat(done["started_at"]) >= ends
    assert stack.status("staging")["revision"] == queued["number"]


def test_an_emergency_rollback_passes_a_freeze_and_is_audited(stack: Stack):
    v1, v2 = stack.upload("v1"), stack.upload("v2")
    stack.wait_phase("production", stack.deploy("production", v1)["number"], {"succeeded"})
    stack.wait_phase("production", stack.deploy("production", v2)["number"], {"succeeded"})
    freeze = {"cron": "* * * * *", "duration": "10m", "reason": "black friday"}
    assert stack.api("POST", "/api/v1/freezes", json=freeze).status_code == 201
    done = stack.cli(
        "rollback",
        "a/pay",
        "--env",
        "production",
        "--emergency",
        "--reason",
        "v2 charges twice",
        "--wait",
    )
    assert "production revision 3 succeeded" in done.stdout
    assert stack.status("production")["digest"] == v1
    entries = stack.api("GET", "/api/v1/teams/a/audit", params={"limit": 500}).json()["items"]
    emergency = next(e for e in entries if e["action"] == "emergency")
    assert emergency["detail"]["reason"] == "v2 charges twice"
    assert emergency["detail"]["from"] == 2 and emergency["detail"]["to"] == 1
    # A deploy asked for in the same freeze waits at its gate instead.
    again = stack.deploy("production", stack.upload("v3"))
    held = stack.wait_phase("production", again["number"], {"paused"})
    assert held["pause_reason"] == "freeze"
