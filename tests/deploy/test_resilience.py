"""A rollout survives its coordinator's death and its router's restart, and a bad canary
is aborted by the health-check rule."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.deploy.conftest import (
    QUOTE,
    Stack,
    assert_no_failures,
    load,
    start_stack,
    stop_stack,
)
from tests.helpers import wait_until


def test_a_killed_coordinator_s_canary_is_finished_by_another_replica(
    tmp_path: Path, postgres_url: str, haproxy_required: None
):
    stack = start_stack(tmp_path, replicas=2, database_url=postgres_url)
    try:
        v1 = stack.upload("v1")
        first = stack.deploy("production", v1)
        stack.wait_phase("production", first["number"], {"succeeded"})
        url = stack.status("production")["url"] + QUOTE
        v2 = stack.upload("v2")
        engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
        with load(url, keepalive=True) as running:
            made = stack.deploy(
                "production", v2, strategy="canary", steps="20,pause=2s,60,pause=2s,100"
            )
            stack.wait_step("production", "pause")
            with engine.connect() as conn:
                owner = conn.execute(text("SELECT lease_owner FROM environments")).scalar_one()
            pid = int(owner.split(":")[1])
            victim = next(p for p in stack.procs if p.pid == pid)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            victim.wait()
            stack.urls = [u for u, p in zip(stack.urls, stack.procs, strict=True) if p.pid != pid]

            def taken_over() -> bool:
                with engine.connect() as conn:
                    now_owner = conn.execute(
                        text("SELECT lease_owner FROM environments")
                    ).scalar_one()
                return now_owner != owner

            wait_until(taken_over, 10, "another replica to take the environment")
            takeover = time.monotonic() - killed_at
            stack.wait_phase("production", made["number"], {"succeeded"}, timeout=60)
            time.sleep(0.5)
        assert takeover < 5.0, f"took over after {takeover:.1f}s"
        assert_no_failures(running.result, 1000)
        with engine.connect() as conn:
            actions = conn.execute(
                text(
                    "SELECT seq, action, params, done FROM deployment_actions "
                    "WHERE deployment_id = (SELECT id FROM deployments WHERE number = :n) ORDER BY seq"
                ),
                {"n": made["number"]},
            ).all()
        engine.dispose()
        assert all(row.done for row in actions), actions
        assert [row.seq for row in actions] == sorted({row.seq for row in actions})
        splits = [row.params["share"] for row in actions if row.action == "split"]
        assert splits == [2000, 6000, 10000], splits
        counted = Counter(row.action for row in actions)
        assert counted["promote"] == 1 and counted["finish"] == 1, counted
        assert counted["start"] == 2, counted
    finally:
        stop_stack(stack)


def test_routing_comes_back_after_haproxy_restarts_mid_rollout(stack: Stack):
    v1 = stack.upload("v1")
    stack.wait_phase("production", stack.deploy("production", v1)["number"], {"succeeded"})
    url = stack.status("production")["url"] + QUOTE
    made = stack.deploy("production", stack.upload("v2"), strategy="canary", steps="30,pause")
    stack.wait_phase("production", made["number"], {"paused"})
    master = int((stack.data / "deploy" / "router" / "master.pid").read_text())
    os.kill(master, signal.SIGKILL)
    for child in _children(master):
        os.kill(child, signal.SIGKILL)

    def serving() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(serving, 10, "HAProxy to be back")

    def settled() -> bool:
        instances = stack.status("production")["instances"]
        return len(instances) == 4 and all(i["healthy"] for i in instances)

    # The restart settles: the health checks of every re-added server pass.
    wait_until(settled, 15, "every instance healthy in the restarted HAProxy")
    with load(url, keepalive=True, seconds=4) as running:
        time.sleep(4)
    assert_no_failures(running.result, 1500)
    share = running.result["versions"]["v2"] / sum(running.result["versions"].values())
    assert 0.22 < share < 0.38, running.result["versions"]
    assert stack.status("production")["traffic"] == {"stable": 70.0, "canary": 30.0}
    stack.command("production", "promote")
    stack.wait_phase("production", made["number"], {"succeeded"})


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_canary_failing_its_health_checks_is_aborted_and_pinned(stack: Stack):
    v1 = stack.upload("v1")
    stack.wait_phase("production", stack.deploy("production", v1)["number"], {"succeeded"})
    url = stack.status("production")["url"] + QUOTE
    bad = stack.upload("v2-bad", PAYMENTS_FAIL_RATE="0.3", PAYMENTS_UNHEALTHY="1")
    with load(url, keepalive=True) as running:
        made = stack.deploy("production", bad, strategy="canary", steps="50,pause")
        row = stack.wait_phase("production", made["number"], {"aborted"}, timeout=60)
        time.sleep(0.5)
    assert "health checks" in row["message"], row
    assert_no_failures(running.result, 1000)
    assert "v2-bad" not in running.result["versions"]
    status = stack.status("production")
    assert [p["digest"] for p in status["pins"]] == [bad]
    assert status["revision"] == 1
    wait_until(
        lambda: {i["revision"] for i in stack.status("production")["instances"]} == {1},
        15,
        "the bad instances to go",
    )
    again = stack.api(
        "POST",
        "/api/v1/projects/a/pay/deployments",
        json={"environment": "production", "artifact": bad},
    )
    assert again.status_code == 409 and "pinned as bad" in again.json()["detail"]


@pytest.mark.parametrize("policy", ["ordered"])
def test_fifty_concurrent_deploys_never_move_back(stack: Stack, policy: str):
    import concurrent.futures

    digests = [stack.upload(f"v{n}") for n in range(1, 11)]
    requests = [digests[i % 10] for i in (7, 2, 9, 0, 5, 1, 8, 3, 6, 4) * 5]

    def ask(digest: str) -> int:
        return stack.api(
            "POST",
            "/api/v1/projects/a/pay/deployments",
            json={"environment": "staging", "artifact": digest, "queue_policy": policy},
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(ask, requests))
    assert set(codes) <= {201, 409} and 201 in codes, Counter(codes)
    history = stack.api("GET", "/api/v1/projects/a/pay/environments/staging").json()["history"]
    order = [digests.index(row["digest"]) for row in sorted(history, key=lambda r: r["number"])]
    assert order == sorted(order) and len(order) == len(set(order)), order
    last = max(history, key=lambda r: r["number"])
    stack.wait_phase("staging", last["number"], {"succeeded"}, timeout=120)
