"""A fleet for the tests and bench/fleet.py: hosts as Linux network namespaces on a bridge
(tests/netns.py), a real `conveyor agent` inside each (`ip netns exec`), and the
coordinator with its HAProxy in the root namespace, listening on the bridge's address."""

from __future__ import annotations

import asyncio
import csv
import io
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from conveyor.hosting.haproxy import HAProxyRouter
from conveyor.hosting.processes import stop_everything
from tests.deploy.conftest import Stack, start_stack, stop_stack
from tests.helpers import agent_args, process, wait_until
from tests.netns import Host, Network, require_netns

SPREAD = "  placement: {spread: [host], max_per_host: 1}\n"
ANALYSIS = """\
analysis:
  templates:
    health:
      interval: 1s
      min_samples: 50
      metrics:
        - {name: error-rate, max: 5%, compare: stable, max_ratio: 2}
        - {name: p99, quantile: 0.99, max: 500ms}
        - {name: rss, provider: process, measure: rss, max: 512MiB}
"""


def canary_job(weight: int, judged_for: str) -> str:
    return (
        "  ship:\n    deploy:\n      environment: production\n      strategy:\n"
        f"        canary:\n          steps: [{{weight: {weight}}}, "
        f"{{analysis: health, for: {judged_for}}}, {{weight: 100}}]\n"
    )


@dataclass
class Agent:
    host: Host
    proc: subprocess.Popen[bytes]


class Fleet:
    """A coordinator on the bridge's address and the hosts the test adds."""

    def __init__(self, stack: Stack, network: Network, cleanup: ExitStack) -> None:
        self.stack, self.network, self.cleanup = stack, network, cleanup
        self.token = stack.cli("host-token", "create", "--team", "a").stdout.strip()

    def agent(self, name: str, labels: str = "zone=a", router: bool = False) -> Agent:
        """Host `name` (a new namespace, or the one it had) and its agent, joined (a
        router host: `router`)."""
        host = self.network.hosts.get(name) or self.network.host(name)
        root = self.stack.root / f"agent-{name}"
        servers = ",".join(self.stack.urls)
        more = ("--labels", labels, *(("--router",) if router else ()))
        args = agent_args(servers, self.token, name, host.address, root, *more)
        log = self.stack.root / f"agent-{name}-{time.monotonic_ns()}.log"
        proc = self.cleanup.enter_context(process(host.command(args), log, self.stack.env))
        self.cleanup.callback(stop_everything, root / "agent" / "host")
        if router:  # its HAProxy runs in its own session, as on a real router host
            haproxy = HAProxyRouter(root / "agent" / "router")
            self.cleanup.callback(lambda: asyncio.run(haproxy.stop()))
        wait_until(
            lambda: (
                (h := self.stack.api("GET", f"/api/v1/hosts/{name}").json()).get("state") == "up"
                and h
            ),
            30,
            f"host {name} to join",
        )
        return Agent(host, proc)

    def named(self, address: str) -> Host:
        (host,) = [h for h in self.network.hosts.values() if h.address == address]
        return host


@contextmanager
def fleet_in(root: Path, replicas: int = 1, database_url: str | None = None) -> Iterator[Fleet]:
    """`replicas` coordinators in `root` on a new bridge (several: on `database_url`),
    their agents given every replica's URL; everything stopped and removed after."""
    require_netns()
    root.mkdir(parents=True, exist_ok=True)
    with Network() as network, ExitStack() as cleanup:
        stack = start_stack(root, replicas, database_url, host=network.gateway)
        cleanup.callback(stop_stack, stack)
        yield Fleet(stack, network, cleanup)


def metrics(stack: Stack) -> str:
    return stack.api("GET", "/metrics").text


def sample(text: str, series: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(series + " ")]
    return float(line.split()[-1])


def ready(stack: Stack, role: str = "stable") -> list[str]:
    """Where production's ready instances of `role` run, sorted."""
    status = stack.status("production")
    return sorted(
        i["address"] for i in status["instances"] if i["state"] == "ready" and i["role"] == role
    )


def router_sees(stack: Stack) -> dict[str, str]:
    """address:port → its status as HAProxy's own checks have it (UP, DOWN, …)."""
    router = HAProxyRouter(stack.data / "deploy" / "router")
    text = asyncio.run(router.command("show stat -1 4 -1"))
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {r["addr"]: r["status"] for r in rows if r.get("addr")}


def cut_off_a_stable_host(fleet: Fleet, agents: dict[str, Agent]) -> Host:
    """A host that runs a stable instance and no canary one loses its agent (`kill -9`)
    and then its link: it is cut off as a machine that died would be."""
    stack = fleet.stack
    canaries = ready(stack, "canary")
    victim = fleet.named(next(a for a in ready(stack) if a not in canaries))
    agents[victim.name].proc.send_signal(signal.SIGKILL)
    fleet.network.set_link(victim, up=False)
    return victim


def out_of_router(stack: Stack, host: Host) -> bool:
    """Whether HAProxy's own checks have every server of `host` out (none UP)."""
    prefix = host.address + ":"
    return all(s != "UP" for a, s in router_sees(stack).items() if a.startswith(prefix))
