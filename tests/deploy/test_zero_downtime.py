"""Every strategy under a real load through real HAProxy, with keep-alive on and off:
each one ends with 0 failed requests.

Given an environment serving v1, when v2 rolls out (or is promoted, switched back,
aborted, or rolled back), then no request fails."""

from __future__ import annotations

import time

import pytest

from tests.deploy.conftest import QUOTE, Stack, assert_no_failures, load

pytestmark = pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "close"])


def serving_v1(stack: Stack, environment: str = "production") -> tuple[str, str]:
    """Given v1 deployed (its first deploy is rolling), returns its URL and v2's digest."""
    v1 = stack.upload("v1")
    first = stack.deploy(environment, v1)
    stack.wait_phase(environment, first["number"], {"succeeded"})
    return stack.status(environment)["url"] + QUOTE, stack.upload("v2")


def test_rolling_v1_to_v2(stack: Stack, keepalive: bool):
    url, v2 = serving_v1(stack)
    with load(url, keepalive) as running:
        time.sleep(1)
        made = stack.deploy("production", v2, strategy="rolling")
        stack.wait_phase("production", made["number"], {"succeeded"})
        time.sleep(1)
    result = running.result
    assert_no_failures(result, 1500)
    assert set(result["versions"]) == {"v1", "v2"}
    status = stack.status("production")
    assert status["revision"] == made["number"]
    # `healthy` needs HAProxy's last check of each server to have passed: one that failed
    # while the load ran (CI failed here once) shows False until the next (1 s later).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(i["healthy"] for i in status["instances"]):
        time.sleep(0.2)
        status = stack.status("production")
    instances = [(i["revision"], i["healthy"]) for i in status["instances"]]
    assert instances == [(2, True), (2, True)], status


def test_blue_green_promote_then_switch_back(stack: Stack, keepalive: bool):
    url, v2 = serving_v1(stack)
    with load(url, keepalive) as running:
        made = stack.deploy("production", v2, strategy="blue-green")
        stack.wait_phase("production", made["number"], {"paused"})
        preview = stack.status("production")["preview_url"] + QUOTE
        import httpx

        assert httpx.get(preview).json()["version"] == "v2"
        assert httpx.get(url).json()["version"] == "v1"
        assert stack.command("production", "promote").status_code == 200
        stack.wait_phase("production", made["number"], {"succeeded"})
        assert httpx.get(url).json()["version"] == "v2"
        before = stack.status("production")["instances"]
        warm = {(i["slot"], i["port"]) for i in before if i["role"] == "warm"}
        assert len(warm) == 2, before
        back = stack.api("POST", "/api/v1/projects/a/pay/environments/production/rollback", json={})
        assert back.status_code == 201 and back.json()["strategy"] == "switch"
        stack.wait_phase("production", back.json()["number"], {"succeeded"})
        time.sleep(0.5)
    # A switch moves traffic back to the warm instances: none is started for it (the
    # other slot's instances may still be stopping). How fast: bench/deploy.py's
    # switch-back trials; the goal is under a second.
    status = stack.status("production")
    assert {(i["slot"], i["port"]) for i in status["instances"] if i["role"] == "stable"} == warm
    assert_no_failures(running.result, 1000)
    assert status["revision"] == back.json()["number"]
    assert [p["digest"] for p in status["pins"]] == [v2]


def test_canary_through_every_step(stack: Stack, keepalive: bool):
    url, v2 = serving_v1(stack)
    with load(url, keepalive) as running:
        made = stack.deploy(
            "production", v2, strategy="canary", steps="10,pause=1s,50,pause=1s,100"
        )
        stack.wait_phase("production", made["number"], {"succeeded"}, timeout=90)
        time.sleep(0.5)
    assert_no_failures(running.result, 1000)
    assert set(running.result["versions"]) == {"v1", "v2"}
    status = stack.status("production")
    assert status["traffic"] == {"stable": 100.0, "canary": 0.0}
    assert {i["revision"] for i in status["instances"] if i["role"] == "stable"} == {2}


def test_canary_abort_at_50(stack: Stack, keepalive: bool):
    url, v2 = serving_v1(stack)
    with load(url, keepalive) as running:
        made = stack.deploy("production", v2, strategy="canary", steps="50,pause")
        stack.wait_phase("production", made["number"], {"paused"})
        assert stack.status("production")["traffic"]["canary"] == 50.0
        began = time.monotonic()
        assert stack.command("production", "abort").status_code == 200
        while stack.status("production")["traffic"]["canary"] != 0.0:
            time.sleep(0.02)
        to_zero = time.monotonic() - began
        stack.wait_phase("production", made["number"], {"aborted"})
        time.sleep(1)
    assert to_zero < 1.0, f"abort took {to_zero:.2f}s to take the canary to 0 %"
    assert_no_failures(running.result, 1000)
    status = stack.status("production")
    assert status["revision"] == 1 and status["deployment"]["phase"] == "aborted"


def test_rollback_to_a_cold_revision(stack: Stack, keepalive: bool):
    url, v2 = serving_v1(stack)
    made = stack.deploy("production", v2, strategy="rolling")
    stack.wait_phase("production", made["number"], {"succeeded"})
    with load(url, keepalive) as running:
        back = stack.cli("rollback", "a/pay", "--env", "production", "--wait")
        assert "rolling redeploy" in back.stderr
        time.sleep(1)
    assert_no_failures(running.result, 1000)
    status = stack.status("production")
    assert status["history"][0]["kind"] == "rollback"
    assert {i["revision"] for i in status["instances"]} == {status["revision"]}
    assert running.result["versions"].keys() >= {"v1", "v2"}
    refused = stack.api(
        "POST",
        "/api/v1/projects/a/pay/deployments",
        json={"environment": "production", "artifact": v2},
    )
    assert refused.status_code == 409 and "pinned as bad" in refused.json()["detail"]
