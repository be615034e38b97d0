"""Benchmark: the fleet, against a real `conveyor serve` and real `conveyor agent`s.

- idle agents: --agents simulated agents (asyncio tasks in this process, one host each)
  join and long-poll their desired state; once all are in, for --seconds: the
  coordinator's CPU (its share of one core) and the SQL statements per long poll (every
  statement the coordinator sent in the window, its background loops' too, over the
  polls it answered: an upper bound; and net of what its loops send per second with no
  agent, measured for 10 s before the agents join);
- one idle real agent: its RSS and its share of one core over --seconds;
- a 100 MiB artifact to 10 hosts: ten agents' own fetch (ArtifactCache: streamed to
  disk, sha256-verified) in ten processes started together once all are up, against
  ten `curl`s of the same URL at once, from the same coordinator: seconds for the last
  to finish, and their ratio (the round with the median ratio of three);
- on hosts that are network namespaces (as root; tests/deploy/fleets.py), a load of
  500 requests a second through HAProxy:
  - failed requests while rolling, blue-green and a judged canary go out across three
    hosts (two replicas spread);
  - a host whose agent is killed and whose link goes down in the middle of a canary:
    seconds until HAProxy's checks take it out, and until its instance's replacement
    serves elsewhere; the failed requests, and the canary's verdict;
  - `abort` of a canary on three hosts: seconds until HAProxy gives it 0 % (p50, p99
    over --trials), with the coordinator's HAProxy routing, and with two router hosts
    routing (until both of theirs do);
  - one deploy of six instances on three hosts (two each) against the same deploy on
    the coordinator's machine: seconds from the request to `succeeded`, and the ratio.

Prints one JSON object; asserts nothing; bounded in count and time; stops every process
it started. Run: `python bench/fleet.py [--agents 200] [--seconds 30] [--no-netns]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.deploy.conftest import (
    ADMIN,
    QUOTE,
    Stack,
    load,
    service_dir,
    start_stack,
    stop_stack,
)
from tests.deploy.fleets import (
    ANALYSIS,
    Fleet,
    canary_job,
    cut_off_a_stable_host,
    fleet_in,
    out_of_router,
    ready,
)
from tests.helpers import agent_args, process, wait_until

from conveyor.hosting.haproxy import HAProxyRouter
from conveyor.hosting.processes import stop_everything
from deploy import abort_trials  # bench/deploy.py: the same measure, on one machine

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
    coordinator = psutil.Process(stack.procs[0].pid)
    # The coordinator's own loops (sweeps, outboxes, metrics) with no agent: what they
    # cost per second is taken out of the polls' figures below.
    idle_s = min(seconds, 10.0)
    statements, _ = counters(stack)
    cpu = sum(coordinator.cpu_times()[:2])
    await asyncio.sleep(idle_s)
    background_cpu = (sum(coordinator.cpu_times()[:2]) - cpu) / idle_s
    background_statements = (counters(stack)[0] - statements - 1) / idle_s  # not /metrics' own
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
        "coordinator_core_share_without_agents": round(background_cpu, 3),
        "statements_per_poll": round((statements_after - statements) / max(polls, 1), 2),
        "statements_per_poll_net": round(
            (statements_after - statements - background_statements * took) / max(polls, 1), 2
        ),
        "background_statements_per_s": round(background_statements, 1),
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:3],
    }


def deploy_seconds(stack: Stack, environment: str, digest: str) -> float:
    began = time.monotonic()
    made = stack.deploy(environment, digest)
    stack.wait_phase(environment, made["number"], {"succeeded"}, timeout=120)
    return round(time.monotonic() - began, 2)


FETCH = """
import asyncio, sys, uuid
from pathlib import Path
import httpx
from conveyor.agent.artifacts import ArtifactCache
url, token, host, fence, digest, root = sys.argv[1:]
async def main():
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as http:  # an agent's, made once
        cache = ArtifactCache(Path(root), 1 << 40)
        print("ready", flush=True)
        sys.stdin.readline()  # started together, once every interpreter is up
        await cache.fetch(http, url, uuid.UUID(host), int(fence), digest)
asyncio.run(main())
"""


def fan_out(stack: Stack, root: Path, hosts: int = 10, mib: int = 100) -> dict[str, Any]:
    """A `mib` MiB artifact fetched by `hosts` agents at once, against as many curls."""
    folder = root / "big"
    (folder / "payments").mkdir(parents=True)
    with (folder / "payments" / "blob.bin").open("wb") as out:
        for _ in range(mib):
            out.write(os.urandom(1 << 20))
    (folder / "conveyor.yml").write_text(
        "version: 1\nservice: big\nteam: a\njobs:\n  noop: {script: 'true'}\n"
        "runtime:\n  command: 'true'\n"
    )
    digest = stack.cli("artifacts", "upload", "a/pay", str(folder)).stdout.split()[-1]
    token = stack.cli("host-token", "create", "--team", "a").stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}

    def timed(commands: list[list[str]], barrier: bool = False) -> float:
        """Seconds until the last of `commands` ends; with `barrier`, from when every
        one of them said it is ready (an agent is up long before it fetches)."""
        pipe = subprocess.PIPE if barrier else subprocess.DEVNULL
        procs = [subprocess.Popen(c, stdin=pipe, stdout=pipe, text=True) for c in commands]
        if barrier:
            for proc in procs:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        began = time.monotonic()
        if barrier:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.close()
        codes = [p.wait(timeout=600) for p in procs]
        assert codes == [0] * len(codes), codes
        return time.monotonic() - began

    def url(h: dict[str, Any]) -> str:
        path = f"/api/v1/agent/artifacts/{digest}?host={h['host_id']}&fence={h['fence']}"
        return stack.url + path

    fetch = [sys.executable, "-c", FETCH, stack.url, token]
    rounds = []
    for _ in range(3):  # the median of three rounds: one round swings by a third here
        joined = [  # (again each round: a host that does not poll is soon found lost)
            httpx.post(
                f"{stack.url}/api/v1/agent/join",
                json={"name": f"fan-{n}", "address": f"127.0.1.{n + 1}"},
                headers=auth,
            ).json()
            for n in range(hosts)
        ]
        bearer = f"Authorization: Bearer {token}"
        curls = [
            ["curl", "-sfo", str(root / f"curl-{n}"), "-H", bearer, url(h)]
            for n, h in enumerate(joined)
        ]
        agents = [
            [*fetch, h["host_id"], str(h["fence"]), digest, str(root / f"cache-{n}")]
            for n, h in enumerate(joined)
        ]
        served = psutil.Process(stack.procs[0].pid)
        cpu = sum(served.cpu_times()[:2])
        curl_s = timed(curls)
        curl_cpu = sum(served.cpu_times()[:2]) - cpu
        agent_s = timed(agents, barrier=True)
        agent_cpu = sum(served.cpu_times()[:2]) - cpu - curl_cpu
        for n in range(hosts):
            cached = root / f"cache-{n}" / digest.removeprefix("sha256:")
            assert cached.stat().st_size >= mib << 20
            cached.unlink()  # the next round fetches again, into a new file as curl does
            (root / f"curl-{n}").unlink()
        rounds.append((agent_s, curl_s, agent_cpu, curl_cpu))
    agent_s, curl_s, agent_cpu, curl_cpu = sorted(rounds, key=lambda r: r[0] / r[1])[1]
    return {
        "mib": mib,
        "hosts": hosts,
        "agents_s": round(agent_s, 2),
        "curls_s": round(curl_s, 2),
        "ratio": round(agent_s / curl_s, 2),
        "ratios": sorted(round(r[0] / r[1], 2) for r in rounds),
        # The server's side costs the same for both: the gap is the clients' own CPU
        # (a Python agent reads, hashes and writes; curl only writes) on shared cores.
        "coordinator_cpu_s": {"agents": round(agent_cpu, 2), "curls": round(curl_cpu, 2)},
    }


def v1_on_three_hosts(fleet: Fleet) -> None:
    """Three hosts with an agent each, and v1 on two of them (SPREAD)."""
    for n in (1, 2, 3):
        fleet.agent(f"h{n}")
    first = fleet.stack.deploy("production", fleet.stack.upload("v1", extra=SPREAD))
    fleet.stack.wait_phase("production", first["number"], {"succeeded"}, timeout=120)


def strategies_on_three_hosts(root: Path) -> dict[str, Any]:
    """Failed requests per strategy at 500 req/s, three hosts, two replicas spread."""
    out: dict[str, Any] = {}
    with fleet_in(root) as fleet:
        stack = fleet.stack
        v1_on_three_hosts(fleet)
        url = str(stack.status("production")["url"]) + QUOTE
        plans = [  # uploaded in the order they go out
            ("rolling", stack.upload("v2", extra=SPREAD), {"strategy": "rolling"}),
            ("blue-green", stack.upload("v3", extra=SPREAD), {"strategy": "blue-green"}),
            (
                "canary-judged",
                stack.upload("v4", extra=SPREAD + ANALYSIS, jobs=canary_job(50, "4s")),
                {},
            ),
        ]
        for name, digest, body in plans:
            with load(url, keepalive=True, rate=500) as running:
                time.sleep(1)
                made = stack.deploy("production", digest, **body)
                if name == "blue-green":
                    stack.wait_phase("production", made["number"], {"paused"}, timeout=120)
                    stack.command("production", "promote")
                stack.wait_phase("production", made["number"], {"succeeded"}, timeout=120)
                time.sleep(1)
            result = running.result
            out[name] = {k: result[k] for k in ("requests", "failed", "rps", "p99_ms")}
    return out


def host_lost_mid_canary(root: Path) -> dict[str, Any]:
    """A host cut off (agent killed, link down) while a canary is being judged."""
    spread = "  placement: {spread: [host]}\n"
    with fleet_in(root) as fleet:
        stack = fleet.stack
        agents = {n: fleet.agent(n) for n in ("h1", "h2", "h3", "h4")}
        first = stack.deploy("production", stack.upload("v1", extra=spread))
        stack.wait_phase("production", first["number"], {"succeeded"}, timeout=120)
        url = str(stack.status("production")["url"]) + QUOTE
        v2 = stack.upload("v2", extra=spread + ANALYSIS, jobs=canary_job(50, "20s"))
        with load(url, keepalive=True, rate=500) as running:
            time.sleep(1)
            made = stack.deploy("production", v2)
            stack.wait_step("production", "analysis health", timeout=120)
            victim = cut_off_a_stable_host(fleet, agents)
            cut = time.monotonic()
            wait_until(lambda: out_of_router(stack, victim), 30, "HAProxy out", every=0.05)
            unrouted = time.monotonic() - cut
            wait_until(
                lambda: len(s := ready(stack)) == 2 and victim.address not in s,
                120,
                "the replacement",
                every=0.05,
            )
            replaced = time.monotonic() - cut
            ended = stack.wait_phase("production", made["number"], {"succeeded"}, timeout=120)
            time.sleep(1)
        verdict = stack.api("GET", f"/api/v1/deployments/{made['id']}/analysis").json()
        fleet.network.set_link(victim, up=True)
    result = running.result
    return {
        "lease_s": 4,
        "unrouted_s": round(unrouted, 2),
        "replacement_serving_s": round(replaced, 2),
        "requests": result["requests"],
        "failed": result["failed"],
        "errors": result["errors"],
        "canary": ended["phase"],
        "verdict": verdict["runs"][0]["phase"],
    }


def abort_on_hosts(root: Path, trials: int) -> dict[str, Any]:
    """`abort` of a canary whose instances run on three hosts: the time until HAProxy's
    split map gives it 0 % (the one router: the coordinator's)."""
    with fleet_in(root) as fleet:
        v1_on_three_hosts(fleet)
        stack = fleet.stack
        return abort_trials(stack, "production", [stack.upload("v2", extra=SPREAD)], trials)


def abort_on_router_hosts(root: Path, trials: int) -> dict[str, Any]:
    """The same, with the environment routed by two router hosts: the time until both
    of their HAProxies give the canary 0 %."""
    with fleet_in(root) as fleet:
        for name in ("r1", "r2"):
            fleet.agent(name, "role=router", router=True)
        for n in (1, 2, 3):
            fleet.agent(f"h{n}", "role=web")
        stack = fleet.stack
        web = "  placement: {labels: {role: web}, spread: [host], max_per_host: 1}\n"
        first = stack.deploy("production", stack.upload("v1", extra=web))
        stack.wait_phase("production", first["number"], {"succeeded"}, timeout=120)
        routers = [
            HAProxyRouter(stack.root / f"agent-{name}" / "agent" / "router")
            for name in ("r1", "r2")
        ]
        v2 = stack.upload("v2", extra=web)
        return abort_trials(stack, "production", [v2], trials, routers)


def six_instances(root: Path) -> dict[str, Any]:
    """One deploy of 3 hosts x 2 instances against the same on the coordinator's machine."""
    with fleet_in(root) as fleet:
        stack = fleet.stack
        for n in (1, 2, 3):
            fleet.agent(f"h{n}")
        placed = "  placement: {spread: [host], max_per_host: 2}\n"
        on_hosts = deploy_seconds(stack, "fleet", upload_six(stack, "fleet", placed))
        on_machine = deploy_seconds(stack, "local", upload_six(stack, "local", ""))
    return {
        "three_hosts_s": on_hosts,
        "coordinator_machine_s": on_machine,
        "ratio": round(on_hosts / on_machine, 2),
    }


def upload_six(stack: Stack, version: str, extra: str) -> str:
    folder = service_dir(stack.root, version, replicas=6, extra=extra)
    return stack.cli("artifacts", "upload", "a/pay", str(folder)).stdout.split()[-1]


def run(agents: int, seconds: float, netns: bool, trials: int = 20) -> dict[str, Any]:
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
        out["artifact_fan_out"] = fan_out(stack, root)
    finally:
        stop_stack(stack)
    if netns:
        out["strategies_3_hosts"] = strategies_on_three_hosts(root / "strategies")
        out["host_lost_mid_canary"] = host_lost_mid_canary(root / "lost")
        out["abort_to_zero_on_hosts"] = abort_on_hosts(root / "abort", trials)
        out["abort_to_zero_on_two_router_hosts"] = abort_on_router_hosts(root / "routers", trials)
        out["deploy_3_hosts_x_2"] = six_instances(root / "six")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--trials", type=int, default=20, help="aborts on the namespace hosts")
    parser.add_argument(
        "--no-netns", dest="netns", action="store_false", help="skip the namespace hosts (root)"
    )
    args = parser.parse_args()
    netns = args.netns and os.geteuid() == 0
    print(json.dumps(run(args.agents, args.seconds, netns, args.trials), indent=2))


if __name__ == "__main__":
    main()
