"""Benchmark: Conveyor side by side with Buildbot 4.3 on the same workload, in one script.

The workload is the one ../shared/bench/buildbot/README.md defines, so the figures compare:
- K signed GitHub `push` webhooks (one new commit each, on main) from 8 keep-alive
  senders, each making exactly one job `sh -c 'echo hi'`; 10 parallel slots (Conveyor: R
  runner processes x C concurrent jobs, R*C = 10); the same database kind on both sides;
- phases: 3 warm-up pushes; idle: 20 pushes, each waited for, 0.3 s apart; bursts: K=100
  and K=500 as fast as possible; dag: 5 pushes of a 1+10 pipeline (a parent job, then 10
  jobs that need it).

Conveyor's figures come from its own records, on the sender's clock: "job start" is the
runner's `script_started_at` (just before it spawns the script's shell, where Buildbot's
harness stamps step start one PB round trip earlier), "done" the job's `finished_at`.
Coordinator CPU comes from /proc, peak RSS from VmHWM (reset per phase), SQL statements
from GET /api/v1/stats, which is also what the benchmark polls to learn that jobs
finished (a counter: no SQL beyond the token lookup, about one statement per poll).

With --with-buildbot, the Buildbot harness (../shared/bench/buildbot/run.sh; it builds its
own venv with buildbot 4.3.0) runs as many times on the same database kind, and the output
holds both sides, the median [min, max] of each figure over the runs, and the ratios.

Prints one JSON object; asserts nothing; loopback only; every phase is bounded in count and
time; stops every process it started.
Run: `python bench/vs_buildbot.py [--db sqlite|postgres] [--runs 3] [--with-buildbot]
[--ks 100,500] [--idle 20] [--dag 5] [--runners 2 --concurrency 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from dispatch import ADMIN, conveyor, free_port, wait_healthy
from pgtemp import temporary_database

SECRET = "bench-secret-vs-buildbot"
NO_COALESCING = "defaults: {interruptible: false, checkout: false}\n"
"""A newer push does not cancel an older one's job (Buildbot: collapseRequests=False), and
the job needs no checkout (the Buildbot harness's builder has no source step either)."""
TRIVIAL = (
    "version: 1\nservice: trivial\nteam: bench\n"
    + NO_COALESCING
    + "jobs:\n  hi: {script: \"sh -c 'echo hi'\"}\n"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
HARNESS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "buildbot"


def dag_pipeline(fanout: int) -> str:
    children = "".join(
        f"  child{i}: {{script: \"sh -c 'echo hi'\", needs: [parent]}}\n" for i in range(fanout)
    )
    return (
        "version: 1\nservice: dag\nteam: bench\n" + NO_COALESCING + "jobs:\n"
        "  parent: {script: \"sh -c 'echo hi'\"}\n" + children
    )


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, as the Buildbot harness computes it."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[k]


def dist_ms(seconds: list[float | None]) -> dict[str, float] | None:
    values = [1000 * s for s in seconds if s is not None]
    if not values:
        return None
    return {
        "n": len(values),
        "p50": round(pct(values, 50) or 0, 1),
        "p95": round(pct(values, 95) or 0, 1),
        "p99": round(pct(values, 99) or 0, 1),
        "max": round(max(values), 1),
    }


def cpu_s(pid: int, children: bool = False) -> float:
    """utime + stime of a process (and of its waited-for children: git, sh)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])
    return (own + (int(fields[13]) + int(fields[14]) if children else 0)) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def make_repo(path: Path, pipeline: str, commits: int) -> list[str]:
    """A repository with `commits` commits on main, each changing README."""
    path.mkdir(parents=True)
    (path / "conveyor.yml").write_text(pipeline)
    (path / "README").write_text("0\n")
    env = os.environ | {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@e",
                        "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@e"}  # fmt: skip
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "base"], cwd=path, check=True, env=env)
    # fast-import writes thousands of commits in well under a second
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()
    stream = []
    for n in range(commits):
        data = f"{n}\n"
        stream.append(
            f"commit refs/heads/main\ncommitter b <b@e> {1700000000 + n} +0000\n"
            f"data 6\nbench\n{'from ' + head if n == 0 else ''}\n"
            f"M 100644 inline README\ndata {len(data)}\n{data}\n"
        )
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input="".join(stream),
                   text=True, check=True)  # fmt: skip
    log = subprocess.run(
        ["git", "rev-list", "--reverse", f"{head}..main"],
        cwd=path, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=path, check=True)
    return log


def push_body(project: str, sha: str) -> bytes:
    """The same GitHub push payload the Buildbot harness sends (one commit, README)."""
    commit = {
        "id": sha,
        "tree_id": sha,
        "distinct": True,
        "message": "bench push",
        "timestamp": "2024-01-01T00:00:00+00:00",
        "url": f"https://example.invalid/{project}/commit/{sha}",
        "author": {"name": "bench", "email": "bench@example.invalid"},
        "committer": {"name": "bench", "email": "bench@example.invalid"},
        "added": [],
        "removed": [],
        "modified": ["README"],
    }
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": sha,
            "created": False,
            "deleted": False,
            "forced": False,
            "repository": {"name": project, "full_name": f"bench/{project}"},
            "pusher": {"name": "bench"},
            "head_commit": commit,
            "commits": [commit],
        }
    ).encode()


def encoded_push(port: int, project: str, sha: str) -> bytes:
    body = push_body(project, sha)
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return (
        f"POST /hooks/github/bench/{project} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: {sha}\r\nX-Hub-Signature-256: sha256={signature}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def send_pushes(
    port: int, project: str, shas: list[str], senders: int
) -> dict[str, tuple[float, float, int]]:
    """POST one push per sha from `senders` keep-alive connections; (sent, answered,
    status) per sha, on this process's clock."""
    results: dict[str, tuple[float, float, int]] = {}
    todo = iter(shas)

    async def sender() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for sha in todo:
                request = encoded_push(port, project, sha)
                sent = time.time()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                results[sha] = (sent, time.time(), int(head.split(b" ", 2)[1]))
        finally:
            writer.close()

    await asyncio.gather(*(sender() for _ in range(senders)))
    return results


class Conveyor:
    """One coordinator and its runners, started for one measurement run."""

    def __init__(self, root: Path, db_url: str | None, runners: int, concurrency: int) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = os.environ | {
            "CONVEYOR_ADMIN_TOKEN": ADMIN,
            "CONVEYOR_HOOK_RATE_LIMIT": "1000000/second",
            "CONVEYOR_RATE_LIMIT": "1000000/second",
            "CONVEYOR_SERVER": self.base,
        }
        self.env.pop("CONVEYOR_DATABASE_URL", None)
        if db_url:
            self.env["CONVEYOR_DATABASE_URL"] = db_url
        self.runners = runners
        self.concurrency = concurrency
        self.procs: list[subprocess.Popen[bytes]] = []
        self.http = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {ADMIN}"})

    def start(self) -> None:
        self.server = self._spawn(
            conveyor("serve", "--port", str(self.port), "--data-dir", str(self.root / "server")),
            "server.log",
        )
        wait_healthy(self.http)
        self.http.post("/api/v1/teams", json={"name": "bench"}).raise_for_status()
        for n in range(self.runners):
            token = self.http.post("/api/v1/runner-tokens", json={}).json()["token"]
            self._spawn(
                conveyor(
                    "runner", "--token", token, "--name", f"r{n}",
                    "--concurrency", str(self.concurrency),
                    "--data-dir", str(self.root / f"runner{n}"),
                ),
                f"runner{n}.log",
            )  # fmt: skip

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("wb") as out:
            proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def project(self, name: str, repo: Path) -> None:
        self.http.post(
            "/api/v1/projects",
            json={
                "team": "bench",
                "name": name,
                "repo_url": str(repo),
                "provider": "github",
                "webhook_secret": SECRET,
            },
        ).raise_for_status()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.http.close()

    def statements(self) -> int:
        return int(self.stats()["sql_statements"])

    def stats(self) -> dict[str, int]:
        found: dict[str, int] = self.http.get("/api/v1/stats").json()
        return found

    def finished(self) -> int:
        return int(self.http.get("/api/v1/stats").json()["attempts_finished"])

    def wait_finished(self, count: int, timeout: float) -> None:
        """Until the coordinator has recorded `count` finished attempts in all: a cheap
        counter, so waiting does not load the server it measures."""
        deadline = time.monotonic() + timeout
        while self.finished() < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} attempts did not finish in {timeout}s")
            time.sleep(0.02)

    def runs_by_sha(self, project: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = self.http.get(f"/api/v1/projects/bench/{project}/runs", params=params).json()
            for run in page["items"]:
                found[run["sha"]] = run
            cursor = page["next_cursor"]
            if not cursor:
                return found

    def wait_done(self, project: str, shas: list[str], timeout: float) -> dict[str, Any]:
        """The finished runs of these commits, in full (polls at most once a second)."""
        deadline = time.monotonic() + timeout
        wanted = set(shas)
        while time.monotonic() < deadline:
            runs = self.runs_by_sha(project)
            final = {
                s
                for s in wanted
                if s in runs and runs[s]["status"] in ("success", "failed", "canceled")
            }
            if final == wanted:
                return {s: self.http.get(f"/api/v1/runs/{runs[s]['id']}").json() for s in shas}
            time.sleep(0.05)
        raise SystemExit(f"{len(wanted)} runs did not finish in {timeout}s")


def job_times(run: dict[str, Any], sent: float) -> dict[str, float | None]:
    """Push → start (script spawn) and push → done of a run's jobs, in seconds."""
    starts = [
        job["history"][-1]["reports"].get("script_started_at")
        for job in run["jobs"]
        if job["history"]
    ]
    ends = [ts(job["finished_at"]) for job in run["jobs"]]
    first = min((s for s in starts if s), default=None)
    last = max((s for s in starts if s), default=None)
    done = max((e for e in ends if e), default=None)
    return {
        "start": first - sent if first else None,
        "last_start": last - sent if last else None,
        "done": done - sent if done else None,
    }


def host_cpu() -> tuple[float, float]:
    """Busy and total jiffies of the whole machine, from /proc/stat (all cores)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run_stages(run: dict[str, Any]) -> dict[str, float | None]:
    """When a one-job run passed each stage on the way to its script (server clock, the
    same machine): run stored, job queued, job leased to a runner, script spawned."""
    job = run["jobs"][0]
    return {
        "run_created": ts(run["created_at"]),
        "job_queued": ts(job["queued_at"]) if job["queued_at"] else None,
        "job_leased": ts(job["started_at"]) if job["started_at"] else None,
        "script_spawned": job["history"][-1]["reports"].get("script_started_at")
        if job["history"]
        else None,
    }


def measure(conv: Conveyor, args: argparse.Namespace, shas: list[str], dag: list[str]) -> dict:
    out: dict[str, Any] = {}
    pid = conv.server.pid
    cursor = 0

    def take(n: int) -> list[str]:
        nonlocal cursor
        chunk = shas[cursor : cursor + n]
        cursor += n
        return chunk

    done = conv.finished()
    for sha in take(3):  # warm-up
        sent = asyncio.run(send_pushes(conv.port, "trivial", [sha], 1))[sha][0]
        done += 1
        conv.wait_finished(done, 60)
        runs = conv.wait_done("trivial", [sha], 60)
        out.setdefault("warmup_push_to_done_ms", []).append(
            round(1000 * (job_times(runs[sha], sent)["done"] or 0), 1)
        )
    idle: list[dict[str, float | None]] = []
    hook_ms: list[float] = []
    stages: dict[str, list[float | None]] = {}
    for sha in take(args.idle):
        sent, answered, _ = asyncio.run(send_pushes(conv.port, "trivial", [sha], 1))[sha]
        hook_ms.append(answered - sent)
        done += 1
        conv.wait_finished(done, 60)
        run = conv.wait_done("trivial", [sha], 60)[sha]
        idle.append(job_times(run, sent))
        for stage, at in run_stages(run).items():
            stages.setdefault(stage, []).append(at - sent if at else None)
        time.sleep(0.3)
    out["idle"] = {
        "push_to_start_ms": dist_ms([t["start"] for t in idle]),
        "push_to_done_ms": dist_ms([t["done"] for t in idle]),
        "webhook_http_ms": dist_ms(hook_ms),
        "push_to_stage_p50_ms": {
            stage: (dist_ms(times) or {}).get("p50") for stage, times in stages.items()
        },
    }
    out["bursts"] = []
    for k in args.ks:
        batch = take(k)
        time.sleep(1.0)
        reset_peak(pid)
        cpu0, stats0 = cpu_s(pid), conv.stats()
        sql0 = stats0["sql_statements"]
        git0 = cpu_s(pid, children=True) - cpu0
        runners0 = sum(cpu_s(p.pid, children=True) for p in conv.procs[1:])
        host0 = host_cpu()
        sends = asyncio.run(send_pushes(conv.port, "trivial", batch, args.senders))
        done += k
        conv.wait_finished(done, 600)
        cpu1, stats1 = cpu_s(pid), conv.stats()
        sql1 = stats1["sql_statements"]
        git1 = cpu_s(pid, children=True) - cpu1
        runners1 = sum(cpu_s(p.pid, children=True) for p in conv.procs[1:])
        host1 = host_cpu()
        runs = conv.wait_done("trivial", batch, 600)
        times = {sha: job_times(runs[sha], sends[sha][0]) for sha in batch}
        first_sent = min(s[0] for s in sends.values())
        created = [run_stages(runs[sha])["run_created"] for sha in batch]
        last_created = max(at for at in created if at is not None)
        last_done = max(sends[s][0] + (t["done"] or 0) for s, t in times.items())
        wall = last_done - first_sent
        out["bursts"].append(
            {
                "k": k,
                "succeeded": sum(1 for r in runs.values() if r["status"] == "success"),
                "http_non_2xx": sum(1 for s in sends.values() if not 200 <= s[2] < 300),
                "submit_wall_s": round(max(s[1] for s in sends.values()) - first_sent, 3),
                "total_wall_s": round(wall, 3),
                "throughput_jobs_per_s": round(k / wall, 2),
                "push_to_start_ms": dist_ms([t["start"] for t in times.values()]),
                "push_to_done_ms": dist_ms([t["done"] for t in times.values()]),
                "webhook_http_ms": dist_ms([s[1] - s[0] for s in sends.values()]),
                "runs_created_per_s": round(k / (last_created - first_sent), 1),
                "host_cpu_busy_pct": round(
                    100 * (host1[0] - host0[0]) / max(host1[1] - host0[1], 1e-9), 1
                ),
                "coordinator_cpu_ms_per_job": round(1000 * (cpu1 - cpu0) / k, 1),
                "coordinator_git_cpu_ms_per_job": round(1000 * (git1 - git0) / k, 1),
                "runners_cpu_ms_per_job": round(1000 * (runners1 - runners0) / k, 1),
                "coordinator_rss_peak_mib": round(peak_rss_mib(pid), 1),
                "sql_statements_per_job": round((sql1 - sql0) / k, 1),
                "claims_per_job": round((stats1["claims"] - stats0["claims"]) / k, 2),
                "empty_claims_per_job": round(
                    (stats1["empty_claims"] - stats0["empty_claims"]) / k, 2
                ),
            }
        )
    rows = []
    for sha in dag[: args.dag]:
        time.sleep(0.3)
        sent = asyncio.run(send_pushes(conv.port, "dag", [sha], 1))[sha][0]
        done += 1 + args.fanout
        conv.wait_finished(done, 120)
        rows.append(job_times(conv.wait_done("dag", [sha], 120)[sha], sent))
    children = []
    for sha, row in zip(dag[: args.dag], rows, strict=True):
        del sha
        children.append(row)
    out["dag"] = {
        "fanout": args.fanout,
        "push_to_parent_start_ms": dist_ms([r["start"] for r in rows]),
        "push_to_last_child_start_ms": dist_ms([r["last_start"] for r in rows]),
        "push_to_all_done_ms": dist_ms([r["done"] for r in rows]),
    }
    out["coordinator_rss_end_mib"] = round(peak_rss_mib(pid), 1)
    return out


def conveyor_run(args: argparse.Namespace) -> dict[str, Any]:
    total = 3 + args.idle + sum(args.ks)
    with tempfile.TemporaryDirectory() as tmp, temporary_database(args.db) as db_url:
        root = Path(tmp)
        shas = make_repo(root / "trivial", TRIVIAL, total)
        dag = make_repo(root / "dag", dag_pipeline(args.fanout), args.dag)
        conv = Conveyor(root, db_url, args.runners, args.concurrency)
        with ExitStack() as stack:
            stack.callback(conv.stop)
            conv.start()
            conv.project("trivial", root / "trivial")
            conv.project("dag", root / "dag")
            return measure(conv, args, shas, dag)


def buildbot_run(args: argparse.Namespace) -> dict[str, Any]:
    env = os.environ | {
        "DB": args.db,
        "KS": ",".join(str(k) for k in args.ks),
        "IDLE_N": str(args.idle),
        "DAG_N": str(args.dag),
        "DAG_FANOUT": str(args.fanout),
    }
    done = subprocess.run(
        ["bash", str(args.harness / "run.sh")], env=env, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"ok": False, "error": done.stderr[-2000:]}
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def buildbot_figures(run: dict[str, Any]) -> dict[str, Any]:
    """The Buildbot harness's figures, under the names this script uses."""
    bursts = {b["k"]: b for b in run.get("bursts", [])}
    big = bursts[max(bursts)] if bursts else {}
    return {
        "idle_push_to_start_p50_ms": _dig(run, "idle", "push_to_ms", "step_start", "p50"),
        "idle_push_to_start_p95_ms": _dig(run, "idle", "push_to_ms", "step_start", "p95"),
        "throughput_jobs_per_s": big.get("throughput_builds_per_s"),
        "cpu_ms_per_job": _dig(big, "process", "master_cpu_ms_per_build"),
        "push_to_start_p50_ms": _dig(big, "push_to_ms", "step_start", "p50"),
        "push_to_start_p95_ms": _dig(big, "push_to_ms", "step_start", "p95"),
        "push_to_start_p99_ms": _dig(big, "push_to_ms", "step_start", "p99"),
        "webhook_http_p50_under_burst_ms": _dig(big, "push_to_ms", "hook_http", "p50"),
        "dag_push_to_all_done_p50_ms": _dig(run, "dag", "push_to_ms", "parent_done", "p50"),
        "rss_peak_mib": _dig(big, "process", "master_rss_peak_mib"),
        "sql_statements_per_job": _dig(big, "process", "db_ops_per_build", "sql_statements"),
    }


def conveyor_figures(run: dict[str, Any]) -> dict[str, Any]:
    big = max(run["bursts"], key=lambda b: b["k"])
    return {
        "idle_push_to_start_p50_ms": run["idle"]["push_to_start_ms"]["p50"],
        "idle_push_to_start_p95_ms": run["idle"]["push_to_start_ms"]["p95"],
        "throughput_jobs_per_s": big["throughput_jobs_per_s"],
        "cpu_ms_per_job": big["coordinator_cpu_ms_per_job"],
        "push_to_start_p50_ms": big["push_to_start_ms"]["p50"],
        "push_to_start_p95_ms": big["push_to_start_ms"]["p95"],
        "push_to_start_p99_ms": big["push_to_start_ms"]["p99"],
        "webhook_http_p50_under_burst_ms": big["webhook_http_ms"]["p50"],
        "dag_push_to_all_done_p50_ms": run["dag"]["push_to_all_done_ms"]["p50"],
        "rss_peak_mib": big["coordinator_rss_peak_mib"],
        "sql_statements_per_job": big["sql_statements_per_job"],
    }


def spread(values: list[Any]) -> dict[str, float] | None:
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    if not numbers:
        return None
    return {
        "median": round(statistics.median(numbers), 2),
        "min": round(min(numbers), 2),
        "max": round(max(numbers), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ks", default="100,500")
    parser.add_argument("--idle", type=int, default=20)
    parser.add_argument("--dag", type=int, default=5)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--with-buildbot", action="store_true")
    parser.add_argument("--harness", type=Path, default=HARNESS)
    args = parser.parse_args()
    args.ks = [int(k) for k in args.ks.split(",") if k]
    result: dict[str, Any] = {
        "db": args.db,
        "slots": args.runners * args.concurrency,
        "conveyor_runs": [],
        "buildbot_runs": [],
    }
    for _ in range(args.runs):
        result["conveyor_runs"].append(conveyor_run(args))
        if args.with_buildbot:
            result["buildbot_runs"].append(buildbot_run(args))
    ours = [conveyor_figures(r) for r in result["conveyor_runs"]]
    theirs = [buildbot_figures(r) for r in result["buildbot_runs"] if r.get("bursts")]
    summary: dict[str, Any] = {}
    for key in ours[0]:
        mine = spread([o[key] for o in ours])
        other = spread([t[key] for t in theirs]) if theirs else None
        row: dict[str, Any] = {"conveyor": mine, "buildbot": other}
        if mine and other and mine["median"] and other["median"]:
            row["conveyor_over_buildbot"] = round(mine["median"] / other["median"], 3)
        summary[key] = row
    result["summary"] = summary
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
