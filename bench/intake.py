"""Benchmark: webhook intake through a real `conveyor serve` over loopback.

Starts `conveyor serve` (SQLite, or a throwaway PostgreSQL database with --db postgres) and
a project whose repository has one commit under many branches. Every delivery is a signed
GitHub push of a distinct branch (a complete commit list, as GitHub sends), so each one
stored starts one run.

- sustained: K deliveries from C keep-alive senders, as fast as the server answers:
  deliveries per second, and acknowledgement latency p50/p95/p99 (the time to a 202);
- drain: how many of those the inbox turned into runs per second (the sustainable rate);
- burst: 10x that sustainable rate for --burst-seconds, 20 % of the deliveries sent twice
  (a redelivery with the same id). Reports deliveries lost (acknowledged but not stored),
  duplicate runs (two runs for one push), acknowledgement latency under the burst, and the
  time from the burst's start until the backlog is drained.

Prints one JSON object; asserts nothing; bounded in count and time; stops the server.
Run: `python bench/intake.py [--db sqlite|postgres] [--deliveries 3000] [--senders 16]
[--workers 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from dispatch import ADMIN, conveyor, free_port, percentile, wait_healthy
from pgtemp import temporary_database

SECRET = "bench-intake-secret-0123456789"
PIPELINE = "version: 1\nservice: bench\nteam: bench\njobs:\n  build: {script: 'true'}\n"


def profiled(command: list[str]) -> list[str]:
    """With BENCH_PROFILE=FILE, the server runs under cProfile and writes FILE on exit."""
    target = os.environ.get("BENCH_PROFILE")
    return [command[0], "-m", "cProfile", "-o", target, *command[1:]] if target else command


def make_repo(path: Path, branches: int) -> str:
    path.mkdir(parents=True)
    (path / "conveyor.yml").write_text(PIPELINE)
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=b@e", "-c", "user.name=b", "commit", "-qm", "bench"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()
    refs = "".join(f"create refs/heads/b{i} {sha}\n" for i in range(branches))
    subprocess.run(["git", "update-ref", "--stdin"], cwd=path, input=refs, text=True, check=True)
    return sha


def delivery(n: int, sha: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "ref": f"refs/heads/b{n}",
            "before": "1" * 40,
            "after": sha,
            "created": False,
            "deleted": False,
            "forced": False,
            "commits": [{"id": sha, "added": [], "modified": ["conveyor.yml"], "removed": []}],
            "head_commit": {"id": sha, "message": "bench"},
            "repository": {"default_branch": "main"},
        }
    ).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": f"bench-{n}",
        "X-Hub-Signature-256": f"sha256={signature}",
        "Content-Type": "application/json",
    }


async def send(
    url: str, items: list[tuple[bytes, dict[str, str]]], senders: int, rate: float | None
) -> tuple[list[float], dict[str, int], float]:
    """Post every item from `senders` keep-alive connections, paced at `rate` per second
    when given. Returns acknowledgement latencies (ms), answers by status, and seconds."""
    latencies: list[float] = []
    answers: dict[str, int] = {}
    queue: asyncio.Queue[tuple[int, bytes, dict[str, str]]] = asyncio.Queue()
    for index, (body, headers) in enumerate(items):
        queue.put_nowait((index, body, headers))
    started = time.perf_counter()

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index, body, headers = queue.get_nowait()
            if rate:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            begin = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            latencies.append((time.perf_counter() - begin) * 1000)
            key = f"{response.status_code} {response.json().get('status', '')}"
            answers[key] = answers.get(key, 0) + 1

    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(sender(client) for _ in range(senders)))
    return latencies, answers, time.perf_counter() - started


async def send_raw(
    host: str, port: int, path: str, items: list[tuple[bytes, dict[str, str]]], senders: int
) -> tuple[list[float], dict[str, int], float]:
    """Post every item from `senders` keep-alive HTTP/1.1 connections written by hand:
    requests are encoded up front and each answer is read as status line, headers and a
    Content-Length body, so the client costs far less than the server it measures."""
    encoded = []
    for body, headers in items:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        encoded.append(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            f"{head}\r\n".encode()
            + body
        )
    latencies: list[float] = []
    answers: dict[str, int] = {}
    next_item = iter(encoded)
    started = time.perf_counter()

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for request in next_item:
                begin = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                answer = await reader.readexactly(length)
                latencies.append((time.perf_counter() - begin) * 1000)
                status = head.split(b" ", 2)[1].decode()
                word = json.loads(answer).get("status", "") if answer.startswith(b"{") else ""
                key = f"{status} {word}"
                answers[key] = answers.get(key, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(sender() for _ in range(senders)))
    return latencies, answers, time.perf_counter() - started


def deliver(
    base: str, items: list[tuple[bytes, dict[str, str]]], senders: int
) -> tuple[dict[str, float], dict[str, int], float, str]:
    """Send from hand-written keep-alive connections (see send_raw)."""
    address = httpx.URL(base)
    latencies, answers, seconds = asyncio.run(
        send_raw(address.host, address.port or 80, "/hooks/github/bench/svc", items, senders)
    )
    return summary(latencies), answers, seconds, "raw asyncio HTTP/1.1"


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
    }


def inbox_counts(http: httpx.Client, limit: int) -> dict[str, int]:
    rows = http.get("/api/v1/projects/bench/svc/deliveries", params={"limit": limit}).json()
    counts: dict[str, int] = {"total": len(rows)}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


def wait_drained(http: httpx.Client, expected: int, timeout: float) -> float:
    """Seconds until `expected` deliveries are stored and none is waiting."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        counts = inbox_counts(http, 500) if expected <= 500 else None
        if counts is None:
            done = runs_total(http)
            if done >= expected:
                return time.perf_counter() - start
        elif counts["total"] >= expected and counts.get("received", 0) == 0:
            return time.perf_counter() - start
        time.sleep(0.2)
    raise SystemExit(f"the inbox did not drain {expected} deliveries in {timeout}s")


def runs_total(http: httpx.Client) -> int:
    total, cursor = 0, None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = http.get("/api/v1/projects/bench/svc/runs", params=params).json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return total


def runs_per_ref(http: httpx.Client) -> dict[str, int]:
    found: dict[str, int] = {}
    cursor = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = http.get("/api/v1/projects/bench/svc/runs", params=params).json()
        for run in page["items"]:
            found[run["ref"]] = found.get(run["ref"], 0) + 1
        cursor = page["next_cursor"]
        if not cursor:
            return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--burst-seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2, help="`conveyor serve --workers`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, temporary_database(args.db) as db_url:
        root = Path(tmp)
        burst_max = 50_000
        sha = make_repo(root / "repo", args.deliveries + burst_max)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = os.environ | {
            "CONVEYOR_ADMIN_TOKEN": ADMIN,
            "CONVEYOR_HOOK_RATE_LIMIT": "1000000/second",
            "CONVEYOR_RATE_LIMIT": "1000000/second",
        }
        env.pop("CONVEYOR_DATABASE_URL", None)
        if db_url:
            env["CONVEYOR_DATABASE_URL"] = db_url
        log = (root / "server.log").open("wb")
        server = subprocess.Popen(
            profiled(
                conveyor(
                    "serve",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(root / "server"),
                    "--workers",
                    str(args.workers),
                )
            ),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"})
            wait_healthy(http)
            http.post("/api/v1/teams", json={"name": "bench"}).raise_for_status()
            http.post(
                "/api/v1/projects",
                json={
                    "team": "bench",
                    "name": "svc",
                    "repo_url": str(root / "repo"),
                    "provider": "github",
                    "webhook_secret": SECRET,
                },
            ).raise_for_status()
            hook = f"{base}/hooks/github/bench/svc"
            # Warm-up: the first delivery clones the mirror.
            asyncio.run(send(hook, [delivery(0, sha)], 1, None))
            wait_drained(http, 1, 60)

            items = [delivery(n, sha) for n in range(1, args.deliveries + 1)]
            t0 = time.perf_counter()
            latency, answers, seconds, client = deliver(base, items, args.senders)
            wait_drained(http, args.deliveries + 1, 600)
            total = time.perf_counter() - t0
            sustained = {
                "client": client,
                "deliveries": len(items),
                "senders": args.senders,
                "answers": answers,
                "per_second": round(len(items) / seconds, 1),
                "ack_latency": latency,
                "runs_per_second_drained": round(len(items) / total, 1),
            }
            rate = sustained["runs_per_second_drained"]

            burst_rate = 10 * float(rate)
            count = min(burst_max, int(burst_rate * args.burst_seconds))
            first = args.deliveries + 1
            unique = [delivery(n, sha) for n in range(first, first + count)]
            rng = random.Random(1)
            repeats = rng.sample(unique, count // 4)  # 20 % of all sends are redeliveries
            burst_items = unique + repeats
            rng.shuffle(burst_items)
            t1 = time.perf_counter()
            b_lat, b_answers, b_seconds, _ = deliver(base, burst_items, args.senders)
            drain = wait_drained(http, args.deliveries + 1 + count, 900)
            backlog_s = time.perf_counter() - t1
            per_ref = runs_per_ref(http)
            accepted = b_answers.get("202 accepted", 0)
            burst = {
                "target_rate_per_s": round(burst_rate, 1),
                "sends": len(burst_items),
                "unique_deliveries": count,
                "redeliveries": len(repeats),
                "answers": b_answers,
                "achieved_rate_per_s": round(len(burst_items) / b_seconds, 1),
                "ack_latency": b_lat,
                "deliveries_lost": count - accepted,
                "duplicate_runs": sum(n - 1 for n in per_ref.values() if n > 1),
                "runs": sum(per_ref.values()),
                "backlog_drained_after_s": round(backlog_s, 2),
                "drain_after_last_ack_s": round(drain, 2),
            }
            result = {"db": args.db, "server_workers": args.workers}
            print(json.dumps({**result, "sustained": sustained, "burst": burst}, indent=2))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
