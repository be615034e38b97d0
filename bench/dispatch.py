"""Benchmark: dispatch through a real coordinator and real runners over loopback HTTP.

Starts `conveyor serve` (SQLite, or a throwaway PostgreSQL database with --db postgres)
and R `conveyor runner` processes, then:
- latency: L one-job runs are triggered one after another (runners idle); for each job,
  the time from being queued (at trigger) to running on a runner: p50/p95/p99;
- throughput: one run of K independent `true` jobs; jobs per second from the first job
  queued to the last one finished.
Prints one JSON object; asserts nothing; stops every process it started.
Run: `python bench/dispatch.py [--jobs 1000 --runners 4 --latency-runs 100 --db sqlite]`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from pgtemp import temporary_database

ADMIN = "cvy_admin_bench"


def conveyor(*args: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def repo(path: Path, files: dict[str, str]) -> str:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=b@e", "-c", "user.name=b", "commit", "-qm", "bench"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)
    return f"file://{path}"


def wait_healthy(http: httpx.Client, timeout: float = 60.0) -> None:
    """Until the server answers /healthz (SystemExit after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the server did not start in {timeout:g}s")
        time.sleep(0.1)


def pipeline(jobs: int) -> str:
    body = "".join(f"  j{i}: {{script: 'true', needs: []}}\n" for i in range(jobs))
    return f"version: 1\nservice: bench\nteam: bench\njobs:\n{body}"


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def wait_run(http: httpx.Client, run_id: str, timeout: float, every: float = 0.05) -> dict:
    """Poll the run until it ends. (Each poll loads the whole run: poll a 1,000-job run
    slowly, or the benchmark itself becomes the server's main load.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in ("success", "failed", "canceled"):
            return run
        time.sleep(every)
    raise SystemExit(f"run {run_id} did not finish in {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runners", type=int, default=4)
    parser.add_argument("--latency-runs", type=int, default=100)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--timeout", type=float, default=480)
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-dispatch-") as tmp_dir,
        temporary_database(args.db) as database,
    ):
        tmp = Path(tmp_dir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = os.environ | {"CONVEYOR_ADMIN_TOKEN": ADMIN}
        env.pop("CONVEYOR_DATABASE_URL", None)
        if database:
            env["CONVEYOR_DATABASE_URL"] = database
        try:
            log = (tmp / "server.log").open("wb")
            procs.append(
                subprocess.Popen(
                    conveyor("serve", "--port", str(port), "--data-dir", str(tmp / "server")),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            http = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
            )
            wait_healthy(http, 30)
            http.post("/api/v1/teams", json={"name": "bench"}).raise_for_status()
            for name, jobs in (("one", 1), ("many", args.jobs)):
                url_repo = repo(tmp / name, {"conveyor.yml": pipeline(jobs)})
                http.post(
                    "/api/v1/projects", json={"team": "bench", "name": name, "repo_url": url_repo}
                ).raise_for_status()
            registration = http.post("/api/v1/runner-tokens", json={}).json()["token"]
            for i in range(args.runners):
                out = (tmp / f"runner{i}.log").open("wb")
                procs.append(
                    subprocess.Popen(
                        conveyor(
                            "runner",
                            "--server",
                            url,
                            "--token",
                            registration,
                            "--name",
                            f"r{i}",
                            "--data-dir",
                            str(tmp / f"r{i}"),
                        ),
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            # Warm-up: every runner fetches its mirror once.
            for _ in range(args.runners):
                wait_run(
                    http,
                    http.post("/api/v1/projects/bench/one/runs", json={"ref": "main"}).json()["id"],
                    60,
                )
            latencies = []
            for _ in range(args.latency_runs):
                run = http.post("/api/v1/projects/bench/one/runs", json={"ref": "main"}).json()
                done = wait_run(http, run["id"], 60)
                job = done["jobs"][0]
                latencies.append(ts(job["started_at"]) - ts(job["queued_at"]))
            started = time.monotonic()
            big = http.post("/api/v1/projects/bench/many/runs", json={"ref": "main"}).json()
            done = wait_run(http, big["id"], args.timeout, every=2.0)
            wall = time.monotonic() - started
            jobs = done["jobs"]
            first = min(ts(j["queued_at"]) for j in jobs)
            last = max(ts(j["finished_at"]) for j in jobs)
            result = {
                "benchmark": "dispatch",
                "db": args.db,
                "runners": args.runners,
                "latency_runs": args.latency_runs,
                "queued_to_running_ms": {
                    "p50": round(1000 * percentile(latencies, 50), 1),
                    "p95": round(1000 * percentile(latencies, 95), 1),
                    "p99": round(1000 * percentile(latencies, 99), 1),
                    "mean": round(1000 * statistics.mean(latencies), 1),
                },
                "throughput_jobs": len(jobs),
                "throughput_status": done["status"],
                "throughput_jobs_per_s": round(len(jobs) / (last - first), 1),
                "throughput_wall_s": round(wall, 1),
            }
        finally:
            for proc in reversed(procs):
                proc.send_signal(signal.SIGTERM)
            for proc in reversed(procs):
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
