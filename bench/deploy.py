"""Benchmark: deployments through a real `conveyor serve`, real HAProxy and the example
service as real processes, under a steady load over loopback.

- each strategy (rolling, blue-green with promote, canary 25 → 2 s → 50 → 2 s → 100) from
  v1 to a new revision while `conveyor load` sends --rate requests/s with keep-alive:
  requests, failed requests, p50/p99 latency, the deploy's duration (request → succeeded),
  and from HAProxy's log the sessions it killed (termination state K…) and the servers
  taken down while sessions were active (goal: 0 and 0);
- the latency through HAProxy against hitting one instance directly, same rate and client;
- abort: the time from `POST …/abort` until HAProxy's split map gives the canary 0 %, over
  --trials canaries held at 50 % (p50/p99/max; the goal is p99 ≤ 1 s);
- switch back: after a blue-green promote, the time from `rollback` until the switch to
  the warm revision has succeeded, over 5 trials (the goal is < 1 s);
- RSS of the coordinator and of HAProxy (master + workers) at the end;
- artifacts: upload and download of a --mb file through the API (streamed, digest
  verified) against `cp` of the same file.

Prints one JSON object; asserts nothing; bounded in count and time; stops every process
it started. Run: `python bench/deploy.py [--rate 500] [--trials 20] [--mb 256]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.deploy.conftest import (
    QUOTE,
    Stack,
    load,
    start_stack,
    stop_stack,
)

from conveyor.cli.loadgen import Load
from conveyor.hosting.haproxy import HAProxyRouter


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


TERMINATION = re.compile(r" ([A-Za-z-]{4}) \d+/\d+/\d+/\d+/\d+ ")
STOPPED_BUSY = re.compile(r"going DOWN for maintenance.*?(\d+) sessions active")


def haproxy_log(stack: Stack) -> Path:
    return stack.data / "deploy" / "router" / "haproxy.log"


def cut_sessions(text: str) -> dict[str, int]:
    """From HAProxy's log (abnormal requests and server events): requests whose
    termination state begins with K (a session killed: `shutdown sessions`, a server put
    in maintenance under it), and servers taken down with sessions still active."""
    killed = sum(1 for m in TERMINATION.finditer(text) if m.group(1).startswith("K"))
    busy = sum(1 for m in STOPPED_BUSY.finditer(text) if int(m.group(1)) > 0)
    return {"killed_sessions": killed, "stopped_with_sessions": busy}


def strategy_run(stack: Stack, env: str, digest: str, rate: float, **body: Any) -> dict[str, Any]:
    url = stack.status(env)["url"] + QUOTE
    log = haproxy_log(stack)
    offset = log.stat().st_size if log.exists() else 0
    with load(url, keepalive=True, rate=rate) as running:
        time.sleep(1)
        began = time.monotonic()
        made = stack.deploy(env, digest, **body)
        if body.get("strategy") == "blue-green":
            stack.wait_phase(env, made["number"], {"paused"}, timeout=120)
            stack.command(env, "promote")
        stack.wait_phase(env, made["number"], {"succeeded"}, timeout=180)
        duration = time.monotonic() - began
        time.sleep(1)
    result = running.result
    with log.open("rb") as handle:
        handle.seek(offset)
        logged = handle.read().decode(errors="replace")
    return {
        "requests": result["requests"],
        "failed": result["failed"],
        **cut_sessions(logged),
        "rps": result["rps"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "deploy_s": round(duration, 2),
        "versions": result["versions"],
    }


def direct_vs_router(stack: Stack, env: str, rate: float, seconds: float) -> dict[str, Any]:
    status = stack.status(env)
    port = next(i["port"] for i in status["instances"] if i["role"] == "stable")
    out = {}
    for name, url in (
        ("direct", f"http://127.0.0.1:{port}{QUOTE}"),
        ("haproxy", status["url"] + QUOTE),
    ):
        result = asyncio.run(Load(url, rate=rate, seconds=seconds, keepalive=True).run())
        out[name] = {k: result[k] for k in ("requests", "failed", "p50_ms", "p99_ms")}
    out["p50_ratio"] = round(out["haproxy"]["p50_ms"] / out["direct"]["p50_ms"], 2)
    out["p99_ratio"] = round(out["haproxy"]["p99_ms"] / out["direct"]["p99_ms"], 2)
    return out


def abort_trials(
    stack: Stack,
    env: str,
    digests: list[str],
    trials: int,
    routers: list[HAProxyRouter] | None = None,
) -> dict[str, Any]:
    """`abort` of a paused 50 % canary: the time until every router (the coordinator's
    HAProxy unless `routers` says which) gives the canary 0 %."""
    routers = routers or [HAProxyRouter(stack.data / "deploy" / "router")]
    keys: list[str] = []
    times = []
    for trial in range(trials):
        made = stack.deploy(env, digests[trial % len(digests)], strategy="canary", steps="50,pause")
        stack.wait_phase(env, made["number"], {"paused"}, timeout=120)
        stable_slot = "a" if stack.status(env)["instances"][0]["slot"] == "a" else "b"
        keys = keys or [_route_key(router) for router in routers]
        began = time.monotonic()
        assert stack.command(env, "abort").status_code == 200
        while any(
            _canary_share(router, key, stable_slot) != 0
            for router, key in zip(routers, keys, strict=True)
        ):
            time.sleep(0.002)
        times.append(time.monotonic() - began)
        stack.wait_phase(env, made["number"], {"aborted"}, timeout=60)
    ordered = sorted(times)
    return {
        "trials": trials,
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
        "max_s": round(ordered[-1], 3),
    }


def switch_back_trials(stack: Stack, env: str, newer: str, trials: int) -> dict[str, Any]:
    """Blue-green to `newer`, promote, then `rollback` while the old stack is warm: the
    time from the request until the rollback deployment succeeded (traffic switched)."""
    times = []
    for _ in range(trials):
        made = stack.deploy(env, newer, strategy="blue-green")
        stack.wait_phase(env, made["number"], {"paused"}, timeout=120)
        stack.command(env, "promote")
        stack.wait_phase(env, made["number"], {"succeeded"}, timeout=120)
        began = time.monotonic()
        back = stack.api("POST", f"/api/v1/projects/a/pay/environments/{env}/rollback", json={})
        assert back.json()["strategy"] == "switch", back.text
        while stack.deployment(env, back.json()["number"])["phase"] != "succeeded":
            time.sleep(0.01)
        times.append(time.monotonic() - began)
        stack.api("DELETE", f"/api/v1/projects/a/pay/environments/{env}/pins/{newer}")
    ordered = sorted(times)
    return {
        "trials": trials,
        "p50_s": round(statistics.median(ordered), 3),
        "max_s": round(ordered[-1], 3),
    }


def _route_key(router: HAProxyRouter) -> str:
    text = asyncio.run(router.command(f"show map {router.run / 'split.map'}"))
    return text.split()[1]


def _canary_share(router: HAProxyRouter, key: str, stable_slot: str) -> int:
    text = asyncio.run(router.command(f"show map {router.run / 'split.map'}"))
    fields = dict(line.split()[1:3] for line in text.splitlines() if line.strip())
    share_b = int(fields[key])
    return share_b if stable_slot == "a" else 10_000 - share_b


def artifact_throughput(stack: Stack, mb: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    try:
        source = scratch / "blob.bin"
        with source.open("wb") as handle:
            for _ in range(mb):
                handle.write(os.urandom(1 << 20))
        began = time.monotonic()
        shutil.copyfile(source, scratch / "copy.bin")
        os.sync()
        cp_s = time.monotonic() - began
        (scratch / "copy.bin").unlink()
        server_pid = stack.procs[0].pid
        rss_before = rss_mib([server_pid])
        began = time.monotonic()
        digest = stack.cli("artifacts", "upload", "a/pay", str(source)).stdout.split()[-1]
        up_s = time.monotonic() - began
        rss_after = rss_mib([server_pid])
        began = time.monotonic()
        stack.cli("artifacts", "download", "a/pay", digest, "-o", str(scratch / "down.bin"))
        down_s = time.monotonic() - began
        return {
            "mb": mb,
            "cp_mb_s": round(mb / cp_s, 1),
            "upload_mb_s": round(mb / up_s, 1),
            "download_mb_s": round(mb / down_s, 1),
            "upload_vs_cp": round(cp_s / up_s, 2),
            "download_vs_cp": round(cp_s / down_s, 2),
            "coordinator_rss_mib_before_after_upload": [rss_before, rss_after],
            "note": "upload = CLI sha256 pass + streamed POST + server sha256, fsync, rename",
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--mb", type=int, default=256)
    args = parser.parse_args()
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        print(json.dumps({"error": "haproxy is not installed (apt-get install haproxy)"}))
        sys.exit(1)
    root = Path(tempfile.mkdtemp(prefix="conveyor-bench-deploy-"))
    stack = start_stack(root)
    report: dict[str, Any] = {"rate": args.rate}
    try:
        digests = [stack.upload(f"v{n}") for n in range(1, 6)]
        first = stack.deploy("production", digests[0])
        stack.wait_phase("production", first["number"], {"succeeded"}, timeout=120)
        report["strategies"] = {
            "rolling": strategy_run(stack, "production", digests[1], args.rate, strategy="rolling"),
            "blue-green": strategy_run(
                stack, "production", digests[2], args.rate, strategy="blue-green"
            ),
            "canary": strategy_run(
                stack,
                "production",
                digests[3],
                args.rate,
                strategy="canary",
                steps="25,pause=2s,50,pause=2s,100",
            ),
        }
        report["latency_direct_vs_haproxy"] = direct_vs_router(stack, "production", args.rate, 5)
        report["abort_to_zero"] = abort_trials(stack, "production", [digests[4]], args.trials)
        report["switch_back"] = switch_back_trials(stack, "production", digests[4], 5)
        haproxy = HAProxyRouter(stack.data / "deploy" / "router").processes()
        report["rss_mib"] = {
            "coordinator": rss_mib([stack.procs[0].pid]),
            "haproxy": rss_mib(haproxy),
        }
        report["artifacts"] = artifact_throughput(stack, args.mb)
    finally:
        stop_stack(stack)
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
