"""The deploy contract for scripts, through the CLI as a user types it, and the requests
that are refused."""

from __future__ import annotations

import json
import subprocess

from tests.deploy.conftest import Stack
from tests.helpers import conveyor, wait_until


def test_the_cli_contract_deploy_wait_status_json_pause_resume_promote(stack: Stack):
    v1 = stack.upload("v1")
    done = stack.cli("deploy", "a/pay", "--env", "staging", "--artifact", v1, "--wait")
    assert done.stdout.strip().endswith("staging revision 1 succeeded")
    status = json.loads(stack.cli("status", "a/pay", "--env", "staging", "--json").stdout)
    assert {"revision", "url", "phase", "step", "traffic", "instances"} <= status.keys()
    assert status["revision"] == 1 and status["phase"] == "succeeded"
    assert status["traffic"] == {"stable": 100.0, "canary": 0.0}
    assert [(i["revision"], i["healthy"]) for i in status["instances"]] == [(1, True), (1, True)]
    assert all({"revision", "port", "healthy"} <= i.keys() for i in status["instances"])

    v2 = stack.upload("v2")
    waiting = subprocess.Popen(
        conveyor(
            "deploy",
            "a/pay",
            "--env",
            "staging",
            "--artifact",
            v2,
            "--strategy",
            "canary",
            "--steps",
            "10,pause=1s,50,pause,100",
            "--wait",
        ),
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        paused = wait_until(
            lambda: (
                (s := stack.status("staging"))["phase"] == "paused"
                and "pause until promoted" in (s["step"] or "")
                and s
            ),
            60,
            "the pause until promoted",
        )
        assert paused["traffic"]["canary"] == 50.0
        # The header names the revision that is paused, not the stable one (issue 19 §1.8).
        header = stack.cli("status", "a/pay", "--env", "staging").stdout.splitlines()[0]
        assert "revision 1 stable; revision 2 paused step" in header, header
        stack.cli("pause", "a/pay", "--env", "staging")
        refused = stack.cli("resume", "a/pay", "--env", "staging")
        assert "resume → progressing" in refused.stdout
        stack.cli("promote", "a/pay", "--env", "staging")
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, out + err
    assert "weight 10%" in err and "pause until promoted" in err and "succeeded" in out
    text = stack.cli("status", "a/pay").stdout
    assert "revision 2" in text and "stable 100%" in text


def test_requests_that_cannot_be_carried_out_are_refused_with_the_reason(stack: Stack):
    v1, v2 = stack.upload("v1"), stack.upload("v2")
    refused = stack.cli("rollback", "a/pay", "--env", "staging", check=False)
    assert refused.returncode == 1 and "no environment 'staging'" in refused.stdout + refused.stderr
    first = stack.deploy("staging", v2)
    stack.wait_phase("staging", first["number"], {"succeeded"})
    older = stack.api(
        "POST",
        "/api/v1/projects/a/pay/deployments",
        json={"environment": "staging", "artifact": v1},
    )
    assert older.status_code == 409 and "built before revision 1" in older.json()["detail"]
    same = stack.api(
        "POST",
        "/api/v1/projects/a/pay/deployments",
        json={"environment": "staging", "artifact": v2},
    )
    assert same.status_code == 409 and "already revision 1" in same.json()["detail"]
    idle = stack.command("staging", "abort")
    assert idle.status_code == 409 and "no deployment is in progress" in idle.json()["detail"]
    nothing = stack.api("POST", "/api/v1/projects/a/pay/environments/staging/rollback", json={})
    assert (
        nothing.status_code == 409 and "no earlier successful revision" in nothing.json()["detail"]
    )
    unpinned = stack.api("DELETE", f"/api/v1/projects/a/pay/environments/staging/pins/{v1}")
    assert unpinned.status_code == 404


def test_a_pin_is_cleared_with_an_audit_record_and_the_revision_deploys_again(stack: Stack):
    v1, v2 = stack.upload("v1"), stack.upload("v2")
    stack.wait_phase("staging", stack.deploy("staging", v1)["number"], {"succeeded"})
    stack.wait_phase("staging", stack.deploy("staging", v2)["number"], {"succeeded"})
    back = stack.cli("rollback", "a/pay", "--env", "staging", "--to", "1", "--wait")
    assert "revision 3 succeeded" in back.stdout
    assert [p["digest"] for p in stack.status("staging")["pins"]] == [v2]
    stack.cli("unpin", "a/pay", "--env", "staging", v2)
    assert stack.status("staging")["pins"] == []
    again = stack.deploy("staging", v2)
    final = stack.wait_phase("staging", again["number"], {"succeeded"})
    assert final["digest"] == v2
    wait_until(lambda: stack.status("staging")["revision"] == again["number"], 10, "revision 4")
