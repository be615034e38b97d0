"""Benchmark: automated analysis through a real `conveyor serve`, the HAProxy it starts
(whose request log the router provider reads), the example service as real processes,
and a steady load over loopback (--rate, 200 req/s; the canary gets 10 % of it).

Every canary is the example service with a conveyor.yml whose production job runs
`steps: [{weight: 10}, {analysis: bench, for: N}, {weight: 100}]`, judged by the
template TEMPLATE below (error rate and p99 against the stable slot, every second).

- detection, --trials each (20): a canary with 100 % errors; with 5 % errors against
  0.1 % on stable; with every answer 200 ms slower (p99 + 200 ms). Time to detect = the
  first bad response (the load's first failure; for latency, the canary's first traffic)
  → the verdict (the run's decided_at); time to 0 % = the verdict → HAProxy's split map
  giving the canary 0 (polled every 5 ms on the admin socket). Goals: TTD p95 ≤ 10 s for
  the hard cases, ≤ 60 s for 5 %; time to 0 % ≤ 1 s;
- false rollbacks on A/A, --aa-trials (50) canaries of the same service and config as
  stable judged for --aa-seconds (60), the first with a 5 s warm-up latency spike
  (PAYMENTS_WARMUP_S=5, +300 ms): goal 0;
- detection power, --power-trials (50): 2 % errors against 1 % on stable, judged for up
  to 300 s: the share detected (goal ≥ 95 %);
- the same judge (analysis.evaluation, the code the driver runs) on simulated traffic
  at the same rates (--sim-trials sequences each, fixed seed): A/A false alarms over 60 s,
  power within 300 s, and detection times; it checks the real trials' counts and gives
  figures the real clock cannot afford;
- Flagger's rule of thumb on the same traffic (interval 1 min x threshold 5 ≈ 300 s) as a
  ratio of each case's TTD p95.

Prints one JSON object; asserts nothing; bounded in count and time; stops every process
it started. Run: `python bench/analysis.py [--trials 20] [--aa-trials 50] [--power-trials 50]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.deploy.conftest import QUOTE, Stack, start_stack, stop_stack

from conveyor.analysis.evaluation import Evaluation
from conveyor.analysis.judge import Verdict
from conveyor.analysis.providers.base import Measurement, Slot
from conveyor.cli.loadgen import Load
from conveyor.pipeline.analysis import Template

TEMPLATE = """\
analysis:
  templates:
    bench:
      interval: 1s
      min_samples: 100
      warmup: 5s
      metrics:
        - {name: error-rate, compare: stable, max_ratio: 1}
        - {name: p99, quantile: 0.99, compare: stable, max_ratio: 2}
"""
FLAGGER_S = 60 * 5
"""Flagger's rollback rule of thumb: interval 1 m x threshold 5."""
SHARE = 0.1


def jobs(environment: str, seconds: float) -> str:
    return (
        "  ship:\n"
        "    deploy:\n"
        f"      environment: {environment}\n"
        "      strategy:\n"
        "        canary:\n"
        f"          steps: [{{weight: 10}}, {{analysis: bench, for: {seconds:g}s}}, "
        "{weight: 100}]\n"
    )


class SplitWatch:
    """Polls HAProxy's split map every 5 ms: when the canary's share became > 0 and,
    after that, 0 again."""

    def __init__(self, stack: Stack, environment: str) -> None:
        self.admin = stack.data / "deploy" / "router" / "admin.sock"
        self.split = stack.data / "deploy" / "router" / "split.map"
        status = stack.status(environment)
        self.stable = next(i["slot"] for i in status["instances"] if i["role"] == "stable")
        self.key: str | None = None
        self.on: float | None = None
        self.off: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._known = set(self._shares())

    def start(self) -> SplitWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _shares(self) -> dict[str, int]:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(2)
            client.connect(str(self.admin))
            client.sendall(f"show map {self.split}\n".encode())
            client.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := client.recv(65536):
                data += chunk
        pairs = (line.split()[1:3] for line in data.decode().splitlines() if line.strip())
        return {k: int(v) for k, v in pairs}

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            try:
                shares = self._shares()
            except OSError:
                time.sleep(0.005)
                continue
            for key, share_b in shares.items():
                canary = share_b if self.stable == "a" else 10_000 - share_b
                if self.key is None and canary > 0:
                    self.key = key
                if key != self.key:
                    continue
                if self.on is None and canary > 0:
                    self.on = now
                elif self.on is not None and self.off is None and canary == 0:
                    self.off = now
            time.sleep(0.005)


class LoadThread:
    def __init__(self, url: str, rate: float) -> None:
        self.load = Load(url, rate=rate, seconds=900, keepalive=True)
        self.result: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._loop.run_until_complete(self.load.run())
        finally:
            self._loop.close()

    def finish(self) -> dict[str, Any]:
        self._loop.call_soon_threadsafe(self.load.stop)
        self._thread.join(30)
        return self.result


def epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def serving(stack: Stack, environment: str, **env: str) -> None:
    digest = stack.upload(f"{environment}-v1", **env)
    made = stack.deploy(environment, digest)
    stack.wait_phase(environment, made["number"], {"succeeded"}, timeout=120)


def trial(
    stack: Stack,
    environment: str,
    version: str,
    seconds: float,
    rate: float,
    latency_case: bool = False,
    **env: str,
) -> dict[str, Any]:
    """One canary under load, to its end: what was decided, and when."""
    digest = stack.upload(version, extra=TEMPLATE, jobs=jobs(environment, seconds), **env)
    url = stack.status(environment)["url"] + QUOTE
    watch = SplitWatch(stack, environment).start()
    running = LoadThread(url, rate)
    try:
        time.sleep(0.5)
        made = stack.deploy(environment, digest)
        ended = stack.wait_phase(
            environment, made["number"], {"succeeded", "aborted"}, timeout=seconds + 120
        )
        time.sleep(0.2)
    finally:
        result = running.finish()
        watch.stop()
    found = stack.api("GET", f"/api/v1/deployments/{made['id']}/analysis").json()
    run = next((r for r in found["runs"] if r["key"] == "step-1"), None)
    decided = epoch(run["decided_at"]) if run else None
    if latency_case or not result.get("failures_from_s"):
        first_bad = watch.on
    else:
        first_bad = result["started_at"] + result["failures_from_s"]
    out: dict[str, Any] = {
        "phase": ended["phase"],
        "verdict": run["phase"] if run else None,
        "reason": ended["message"][:160],
        "failed_requests": result.get("failed"),
        "requests": result.get("requests"),
    }
    if ended["phase"] == "aborted" and decided is not None and first_bad is not None:
        out["ttd_s"] = round(decided - first_bad, 3)
        if watch.off is not None:
            out["to_zero_s"] = round(watch.off - decided, 3)
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 3)


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    ttd = [t["ttd_s"] for t in trials if "ttd_s" in t]
    zero = [t["to_zero_s"] for t in trials if "to_zero_s" in t]
    p95 = percentile(ttd, 0.95)
    return {
        "trials": len(trials),
        "detected": sum(1 for t in trials if t["phase"] == "aborted"),
        "ttd_p50_s": round(statistics.median(ttd), 3) if ttd else None,
        "ttd_p95_s": p95,
        "ttd_max_s": round(max(ttd), 3) if ttd else None,
        "to_zero_p50_s": round(statistics.median(zero), 3) if zero else None,
        "to_zero_max_s": round(max(zero), 3) if zero else None,
        "failed_requests_p50": statistics.median([t["failed_requests"] or 0 for t in trials])
        if trials
        else None,
        "flagger_rule_of_thumb_vs_p95": round(FLAGGER_S / p95, 1) if p95 else None,
    }


def detection(stack: Stack, trials: int, rate: float) -> dict[str, Any]:
    serving(stack, "hard")
    serving(stack, "five", PAYMENTS_FAIL_RATE="0.001")
    cases: dict[str, list[dict[str, Any]]] = {
        "errors_100pct": [],
        "errors_5pct": [],
        "p99_200ms": [],
    }
    for i in range(trials):
        cases["errors_100pct"].append(
            trial(stack, "hard", f"e{i}", 60, rate, PAYMENTS_FAIL_RATE="1")
        )
        cases["p99_200ms"].append(
            trial(stack, "hard", f"l{i}", 60, rate, latency_case=True, PAYMENTS_LATENCY_MS="200")
        )
        cases["errors_5pct"].append(
            trial(stack, "five", f"f{i}", 120, rate, PAYMENTS_FAIL_RATE="0.05")
        )
    return {name: summarise(found) | {"each": found} for name, found in cases.items()}


def aa(stack: Stack, trials: int, seconds: float, rate: float) -> dict[str, Any]:
    serving(stack, "aa")
    found = []
    for i in range(trials):
        spike = {"PAYMENTS_WARMUP_S": "5", "PAYMENTS_WARMUP_MS": "300"} if i == 0 else {}
        found.append(trial(stack, "aa", f"a{i}", seconds, rate, **spike))
    return {
        "trials": trials,
        "seconds": seconds,
        "false_rollbacks": sum(1 for t in found if t["phase"] != "succeeded"),
        "with_warmup_spike": found[0] if found else None,
        "each": [{k: t[k] for k in ("phase", "verdict", "reason")} for t in found],
    }


def power(stack: Stack, trials: int, rate: float) -> dict[str, Any]:
    serving(stack, "power", PAYMENTS_FAIL_RATE="0.01")
    found = [
        trial(stack, "power", f"p{i}", 300, rate, PAYMENTS_FAIL_RATE="0.02") for i in range(trials)
    ]
    detected = [t for t in found if t["phase"] == "aborted"]
    ttd = [t["ttd_s"] for t in detected if "ttd_s" in t]
    return {
        "trials": trials,
        "detected": len(detected),
        "share": round(len(detected) / trials, 3) if trials else None,
        "ttd_p50_s": round(statistics.median(ttd), 1) if ttd else None,
        "each": [{k: t.get(k) for k in ("phase", "ttd_s")} for t in found],
    }


# -- the same judge on simulated traffic ------------------------------------------------


def simulate(
    rng: random.Random, rate: float, canary: float, stable: float, seconds: int
) -> int | None:
    """Seconds until the bench template's error-rate metric fails, or None."""
    template = Template.model_validate(
        {
            "interval": "1s",
            "min_samples": 100,
            "metrics": [{"name": "error-rate", "compare": "stable", "max_ratio": 1}],
        }
    )
    run = Evaluation(template, compare=True)
    n_c, n_s = round(rate * SHARE), round(rate * (1 - SHARE))
    for second in range(1, seconds + 1):
        k_c = sum(rng.random() < canary for _ in range(n_c))
        k_s = sum(rng.random() < stable for _ in range(n_s))
        judged = run.add(
            [
                Measurement("error-rate", Slot.CANARY, None, n_c, second - 1, second, failures=k_c),
                Measurement("error-rate", Slot.STABLE, None, n_s, second - 1, second, failures=k_s),
            ],
            SHARE,
        )
        if any(j.verdict is Verdict.FAIL for j in judged):
            return second
    return None


def simulated(trials: int, rate: float) -> dict[str, Any]:
    rng = random.Random(20261206)
    began = time.monotonic()
    aa_found = [simulate(rng, rate, 0.01, 0.01, 60) for _ in range(trials)]
    power_found = [simulate(rng, rate, 0.02, 0.01, 300) for _ in range(trials)]
    five = [simulate(rng, rate, 0.05, 0.001, 120) for _ in range(trials)]
    hard = [simulate(rng, rate, 1.0, 0.0, 60) for _ in range(min(trials, 100))]
    detected = [s for s in power_found if s is not None]
    return {
        "sequences": trials,
        "aa_false_alarms_60s": sum(1 for s in aa_found if s is not None),
        "power_2x_within_300s": round(len(detected) / trials, 3),
        "power_2x_median_s": statistics.median(detected) if detected else None,
        "errors_5pct_p95_s": percentile([s or 999 for s in five], 0.95),
        "errors_100pct_max_s": max(s or 999 for s in hard),
        "cpu_s": round(time.monotonic() - began, 1),
        "note": "evaluations once a second; TTD here counts whole seconds of traffic",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--aa-trials", type=int, default=50)
    parser.add_argument("--aa-seconds", type=float, default=60)
    parser.add_argument("--power-trials", type=int, default=50)
    parser.add_argument("--sim-trials", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        print(json.dumps({"error": "haproxy is not installed (apt-get install haproxy)"}))
        raise SystemExit(1)
    report: dict[str, Any] = {"rate": args.rate, "canary_share": SHARE}
    report["simulated"] = simulated(args.sim_trials, args.rate)
    root = Path(tempfile.mkdtemp(prefix="conveyor-bench-analysis-"))
    stack = start_stack(root)
    try:
        report["detection"] = detection(stack, args.trials, args.rate)
        report["aa"] = aa(stack, args.aa_trials, args.aa_seconds, args.rate)
        report["power"] = power(stack, args.power_trials, args.rate)
    finally:
        stop_stack(stack)
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
