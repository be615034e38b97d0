"""Benchmark: the fleet, against a real `conveyor serve` and real `conveyor agent`s.

- idle agents: --agents simulated agents (asyncio tasks in this process, one host each)
  join and long-poll their desired state; once all are in, for --seconds: the
  coordinator's CPU (its share of one core) and the SQL statements per long poll (every
  statement the coordinator sent in the window, its background loops' too, over the
  polls it answered: an upper bound);
- one idle real agent: its RSS and its share of one core over --seconds;
- a deploy of the example service with 2 replicas spread over 2 real agents' hosts
  (127.0.0.2, 127.0.0.3) against the same deploy on the coordinator's machine: seconds
  from the request to `succeeded`, and their ratio.

Prints one JSON object; asserts nothing; bounded in count and time; stops every process
it started. Run: `python bench/fleet.py [--agents 200] [--seconds 30]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.deploy.conftest import ADMIN, Stack, start_stack, stop_stack
from tests.helpers import agent_args, process, wait_until

from conveyor.hosting.processes import stop_everything

SPREAD = "  placement: {spread: [host], max_per_host: 1}\n"


def sample(text: str, series: str) -> float:
    pattern = re.compile(rf"^{re.escape(series)} ([0-9.e+]+)$", re.M)
    return sum(float(m.group(1)) for m in pattern.finditer(text))


def counters(stack: Stack) -> tuple[float, float]:
    text = stack.api("GET", "/metrics").text
    return (
        sample(text, "conveyor_db_statements_total"),
        sample(text, 'conveyor_agent_calls_total{call="desired"}'),
    )


async def idle_agents(stack: Stack, count: int, seconds: float) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=stack.url, timeout=30, limits=limits) as http:
        made = await http.post("/api/v1/teams/a/host-tokens", json={}, headers=admin)
        token = made.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        errors: list[str] = []
        all_in = asyncio.Event()
        joined: list[dict[str, Any]] = []
        stop = [float("inf")]

        async def agent(n: int) -> int:
            """Join, then long-poll until the end: each host polls as soon as it joined
            (its lease runs from its join)."""
            body = {"name": f"sim-{n}", "address": f"10.200.{n // 250}.{n % 250 + 1}"}
            host = (await http.post("/api/v1/agent/join", json=body, headers=auth)).json()
            joined.append(host)
            if len(joined) == count:
                all_in.set()
            calls, generation = 0, host["generation"]
            params = {"host": host["host_id"], "fence": host["fence"], "wait": 5}
            while time.monotonic() < stop[0]:
                answer = await http.get(
                    "/api/v1/agent/desired",
                    params=params | {"generation": generation},
                    headers=auth,
                    timeout=30,
                )
                if answer.status_code == 409:  # found lost: join again, as an agent does
                    errors.append(f"{answer.status_code} {answer.text[:200]}")
                    again = await http.post("/api/v1/agent/join", json=body, headers=auth)
                    host = again.json()
                    params |= {"fence": host["fence"]}
                    continue
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")
                    await asyncio.sleep(1)
                    continue
                calls += 1 if all_in.is_set() else 0
                generation = answer.json()["generation"]
            return calls

        tasks = [asyncio.create_task(agent(n)) for n in range(count)]
        await all_in.wait()
        await asyncio.sleep(6)  # every agent into its steady long poll
        coordinator = psutil.Process(stack.procs[0].pid)
        statements, desired = counters(stack)
        cpu = sum(coordinator.cpu_times()[:2])
        began = time.monotonic()
        stop[0] = began + seconds
        calls = sum(await asyncio.gather(*tasks))
        took = time.monotonic() - began
        cpu = sum(coordinator.cpu_times()[:2]) - cpu
        statements_after, desired_after = counters(stack)
    polls = desired_after - desired
    return {
        "agents": count,
        "seconds": round(took, 1),
        "polls": int(calls),
        "coordinator_core_share": round(cpu / took, 3),
        "statements_per_poll": round((statements_after - statements) / max(polls, 1), 2),
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:3],
    }


def deploy_seconds(stack: Stack, environment: str, digest: str) -> float:
    began = time.monotonic()
    made = stack.deploy(environment, digest)
    stack.wait_phase(environment, made["number"], {"succeeded"}, timeout=120)
    return round(time.monotonic() - began, 2)


def run(agents: int, seconds: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    # The default lease (15 s; the tests shorten it), so that agents poll every 5 s.
    stack = start_stack(root, extra_env={"CONVEYOR_HOST_LEASE_SECONDS": "15"})
    out: dict[str, Any] = {}
    try:
        out["idle_agents"] = asyncio.run(idle_agents(stack, agents, seconds))
        token = stack.cli("host-token", "create", "--team", "a").stdout.strip()
        with ExitStack() as agents_running:
            procs = []
            for name, address in (("h1", "127.0.0.2"), ("h2", "127.0.0.3")):
                log = root / f"agent-{name}.log"
                procs.append(
                    agents_running.enter_context(
                        process(
                            agent_args(stack.url, token, name, address, root / f"agent-{name}"),
                            log,
                            stack.env,
                        )
                    )
                )
                agents_running.callback(stop_everything, root / f"agent-{name}" / "agent" / "host")
                wait_until(
                    lambda n=name: stack.api("GET", f"/api/v1/hosts/{n}").status_code == 200,
                    30,
                    f"host {name}",
                )
            agent = psutil.Process(procs[0].pid)
            time.sleep(2)
            cpu = sum(agent.cpu_times()[:2])
            time.sleep(seconds)
            out["agent_idle"] = {
                "rss_mib": round(agent.memory_info().rss / 2**20, 1),
                "core_share": round((sum(agent.cpu_times()[:2]) - cpu) / seconds, 4),
            }
            local = stack.upload("v1")
            fleet = stack.upload("v1", extra=SPREAD)
            on_fleet = deploy_seconds(stack, "fleet", fleet)
            on_machine = deploy_seconds(stack, "local", local)
            out["deploy_2_replicas_s"] = {
                "two_hosts": on_fleet,
                "coordinator_machine": on_machine,
                "ratio": round(on_fleet / on_machine, 2),
            }
    finally:
        stop_stack(stack)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps(run(args.agents, args.seconds), indent=2))


if __name__ == "__main__":
    main()
