"""Deploys to the fleet: a real coordinator, real `conveyor agent`s for two hosts (on
loopback addresses of their own), HAProxy on the coordinator routing to instances on
both hosts, and a load through it. A runtime with `placement` runs its instances on the
hosts; one that cannot be placed pauses with the reason and goes on by itself once a
host that fits joins."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from conveyor.hosting.processes import stop_everything
from tests.deploy.conftest import QUOTE, Stack, assert_no_failures, load
from tests.helpers import agent_args, process, wait_until

SPREAD = "  placement: {spread: [host], max_per_host: 1}\n"


class Fleet:
    def __init__(self, stack: Stack, cleanup: ExitStack) -> None:
        self.stack = stack
        self.cleanup = cleanup
        self.token = stack.cli("host-token", "create", "--team", "a").stdout.strip()

    def agent(self, name: str, address: str, labels: str = "zone=a") -> subprocess.Popen[bytes]:
        root = self.stack.root / f"agent-{name}"
        args = agent_args(self.stack.url, self.token, name, address, root, "--labels", labels)
        proc = self.cleanup.enter_context(
            process(args, self.stack.root / f"agent-{name}.log", self.stack.env)
        )
        self.cleanup.callback(stop_everything, root / "agent" / "host")
        wait_until(
            lambda: self.stack.api("GET", f"/api/v1/hosts/{name}").status_code == 200,
            30,
            f"host {name} to join",
        )
        return proc


@pytest.fixture
def fleet(stack: Stack) -> Iterator[Fleet]:
    with ExitStack() as cleanup:
        yield Fleet(stack, cleanup)


def _metrics(stack: Stack) -> str:
    return stack.api("GET", "/metrics").text


def _sample(text: str, series: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(series + " ")]
    return float(line.split()[-1])


def _addresses(stack: Stack) -> list[str]:
    """Where production's stable instances run, sorted."""
    status = stack.status("production")
    return sorted(
        i["address"] for i in status["instances"] if i["state"] == "ready" and i["role"] == "stable"
    )


def test_rolling_and_canary_across_two_hosts_with_zero_failed_requests(stack: Stack, fleet: Fleet):
    fleet.agent("h1", "127.0.0.2")
    fleet.agent("h2", "127.0.0.3")
    v1 = stack.upload("v1", extra=SPREAD)
    first = stack.deploy("production", v1)
    stack.wait_phase("production", first["number"], {"succeeded"}, timeout=90)
    url = str(stack.status("production")["url"]) + QUOTE
    assert _addresses(stack) == ["127.0.0.2", "127.0.0.3"]
    v2 = stack.upload("v2", extra=SPREAD)
    with load(url, keepalive=True, rate=500) as running:
        time.sleep(1)  # traffic on v1 first
        made = stack.deploy("production", v2, strategy="canary", steps="50,100")
        stack.wait_phase("production", made["number"], {"succeeded"}, timeout=120)
        time.sleep(1)  # and on v2 after
    assert_no_failures(running.result, 1000)
    assert set(running.result["versions"]) == {"v1", "v2"}, json.dumps(running.result)
    assert _addresses(stack) == ["127.0.0.2", "127.0.0.3"]


def test_a_placement_that_cannot_be_met_pauses_with_the_reason_until_a_host_fits(
    stack: Stack, fleet: Fleet
):
    fleet.agent("h1", "127.0.0.2")
    v1 = stack.upload("v1", extra=SPREAD)  # two replicas, at most one per host
    made = stack.deploy("production", v1)
    paused = stack.wait_phase("production", made["number"], {"paused"}, timeout=60)
    assert paused["pause_reason"] == "placement", paused
    assert "placed none of 1 instances; of 1 host: 1 at max_per_host 1" in paused["message"]
    # The gauges are counted every few seconds: wait for a count made after the placement.
    used = 'conveyor_host_slots_used{pool="",team="a"} 1.0'
    counted = wait_until(lambda: used in (t := _metrics(stack)) and t, 20, "the fleet's gauges")
    assert 'conveyor_hosts{pool="",state="up",team="a"} 1.0' in counted
    assert _sample(counted, "conveyor_placement_failures_total") >= 1
    assert _sample(counted, 'conveyor_agent_calls_total{call="join"}') == 1
    fleet.agent("h2", "127.0.0.3")
    stack.wait_phase("production", made["number"], {"succeeded"}, timeout=90)
    assert _addresses(stack) == ["127.0.0.2", "127.0.0.3"]


def test_a_drained_host_hands_its_instance_over_with_zero_failed_requests(
    stack: Stack, fleet: Fleet
):
    for name, address in (("h1", "127.0.0.2"), ("h2", "127.0.0.3")):
        fleet.agent(name, address)
    v1 = stack.upload("v1", extra=SPREAD)
    first = stack.deploy("production", v1)
    stack.wait_phase("production", first["number"], {"succeeded"}, timeout=90)
    fleet.agent("h3", "127.0.0.4")
    url = str(stack.status("production")["url"]) + QUOTE
    with load(url, keepalive=True, rate=500) as running:
        time.sleep(1)
        assert stack.cli("host", "drain", "h1").stdout.strip() == "host h1: draining"
        wait_until(
            lambda: _addresses(stack) == ["127.0.0.3", "127.0.0.4"],
            60,
            "the instance of h1 to move to h3",
        )
        time.sleep(1)
    assert_no_failures(running.result, 1000)


def test_a_lost_hosts_instance_is_replaced_on_another_host(stack: Stack, fleet: Fleet):
    h1 = fleet.agent("h1", "127.0.0.2")
    fleet.agent("h2", "127.0.0.3")
    v1 = stack.upload("v1", extra=SPREAD)
    first = stack.deploy("production", v1)
    stack.wait_phase("production", first["number"], {"succeeded"}, timeout=90)
    fleet.agent("h3", "127.0.0.4")
    h1.send_signal(signal.SIGKILL)  # its instance runs on, unreachable by its agent
    h1.wait()
    lost = wait_until(
        lambda: (h := stack.api("GET", "/api/v1/hosts/h1").json())["state"] == "lost" and h,
        30,
        "h1 to be found lost",
    )
    assert lost["state"] == "lost"
    wait_until(
        lambda: _addresses(stack) == ["127.0.0.3", "127.0.0.4"],
        60,
        "h1's instance to be replaced on h3",
    )
    # h1's agent comes back: fenced, it joins again and stops what it no longer owns.
    fleet.agent("h1", "127.0.0.2")
    orphans = stack.root / "agent-h1" / "agent" / "host" / "pids"
    wait_until(lambda: not list(orphans.glob("*.pid")), 30, "h1's orphan to be stopped")
    assert _addresses(stack) == ["127.0.0.3", "127.0.0.4"]
