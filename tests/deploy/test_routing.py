"""Routing details: the header override, the preview URL, a crashed instance restarted
while traffic flows, and `deploy --wait` failing when its deployment is aborted."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx

from tests.deploy.conftest import QUOTE, Stack, assert_no_failures, load
from tests.helpers import conveyor, wait_until


def test_the_track_header_and_the_preview_url_reach_the_chosen_slot(stack: Stack):
    v1 = stack.upload("v1")
    stack.wait_phase("production", stack.deploy("production", v1)["number"], {"succeeded"})
    made = stack.deploy("production", stack.upload("v2"), strategy="canary", steps="0.01,pause")
    stack.wait_phase("production", made["number"], {"paused"})
    status = stack.status("production")
    assert status["traffic"] == {"stable": 99.99, "canary": 0.01}
    url, preview = status["url"] + QUOTE, status["preview_url"] + QUOTE
    with httpx.Client() as client:
        canary = {
            client.get(url, headers={"X-Conveyor-Track": "canary"}).json()["version"]
            for _ in range(20)
        }
        stable = {
            client.get(url, headers={"X-Conveyor-Track": "stable"}).json()["version"]
            for _ in range(20)
        }
        plain = [client.get(url).json()["version"] for _ in range(100)]
        previewed = {client.get(preview).json()["version"] for _ in range(10)}
    assert (canary, stable, previewed) == ({"v2"}, {"v1"}, {"v2"})
    # 0.01 % to the canary: each plain request is a 1-in-10,000 draw (rand(10000) in
    # HAProxy), so one of 100 landing on v2 happens about once in 100 runs; two or more,
    # about once in 20,000.
    assert plain.count("v1") >= 99 and set(plain) <= {"v1", "v2"}
    stack.command("production", "promote")
    stack.wait_phase("production", made["number"], {"succeeded"})
    with httpx.Client() as client:
        assert client.get(url, headers={"X-Conveyor-Track": "stable"}).json()["version"] == "v2"
        assert client.get(preview).json()["version"] == "v1"  # the warm slot, until it expires


def test_a_killed_instance_is_restarted_and_counted_with_no_failed_request(stack: Stack):
    v1 = stack.upload("v1")
    stack.wait_phase("production", stack.deploy("production", v1)["number"], {"succeeded"})
    url = stack.status("production")["url"] + QUOTE
    pids = sorted((stack.data / "agent" / "host" / "pids").glob("*.pid"))  # the embedded agent's
    victim = int(pids[0].read_text().split()[0])
    with load(url, keepalive=True, seconds=20) as running:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        restarted = wait_until(
            lambda: [
                i
                for i in stack.status("production")["instances"]
                if i["restarts"] == 1 and i["healthy"]
            ],
            20,
            "the instance to be restarted and healthy again",
        )
        time.sleep(1)
    assert len(restarted) == 1
    assert_no_failures(running.result, 1000)
    assert running.result["rps"] >= 490
    assert stack.status("production")["deployment"]["phase"] == "succeeded"


def test_deploy_wait_exits_1_when_the_deployment_is_aborted(stack: Stack):
    v1 = stack.upload("v1")
    stack.wait_phase("staging", stack.deploy("staging", v1)["number"], {"succeeded"})
    v2 = stack.upload("v2")
    waiting = subprocess.Popen(
        conveyor(
            "deploy", "a/pay", "--env", "staging", "--artifact", v2, "--steps", "30,pause", "--wait"
        ),
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: stack.status("staging")["phase"] == "paused", 60, "the pause")
        aborted = stack.cli("abort", "a/pay", "--env", "staging")
        assert "abort" in aborted.stdout
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 1, out + err
    assert "staging revision 2 aborted" in out
