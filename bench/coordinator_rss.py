"""Benchmark: a coordinator's memory with 100,000 finished jobs stored.

Stores --jobs finished jobs (runs of 1,000 jobs each) in a fresh SQLite or PostgreSQL
database, then starts `conveyor serve` on it, lists runs through the API, and reads the
server process's resident memory from /proc (VmRSS, and VmHWM for its peak). Prints one
JSON object; nothing is asserted; stops the server it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pgtemp import temporary_database
from sqlalchemy import update

from conveyor.pipeline.plan import compile_plan
from conveyor.pipeline.schema import PipelineSpec
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.scheduler.service import Scheduler
from conveyor.storage.database import Database, database_url
from conveyor.storage.migrate import upgrade
from conveyor.storage.tables import Job, Project, Team

ADMIN = "cvy_admin_rss"


async def store(db: Database, jobs: int, per_run: int) -> None:
    await upgrade(db)
    async with db.transaction() as session:
        team = Team(name="t")
        session.add(team)
        await session.flush()
        project = Project(team_id=team.id, name="p", repo_url="file:///none")
        session.add(project)
    scheduler = Scheduler(db)
    spec = PipelineSpec.model_validate(
        {
            "service": "p",
            "team": "t",
            "jobs": {f"j{i}": {"script": "true", "needs": []} for i in range(per_run)},
        }
    )
    for n in range(jobs // per_run):
        sha = f"{n:040d}"
        plan = compile_plan(spec, Event(EventKind.PUSH, f"refs/heads/b{n}", sha=sha))
        await scheduler.start_run(project, plan, pipeline="p")
    async with db.transaction() as session:
        await session.execute(update(Job).values(status="success"))


def vm(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-rss-") as tmp,
        temporary_database(args.db) as url,
    ):
        data = Path(tmp) / "data"
        env = os.environ | {"CONVEYOR_ADMIN_TOKEN": ADMIN}
        env.pop("CONVEYOR_DATABASE_URL", None)
        if url:
            env["CONVEYOR_DATABASE_URL"] = url
        db = Database(database_url(data, url))
        started = time.perf_counter()
        asyncio.run(store(db, args.jobs, 1000))
        asyncio.run(db.dispose())
        stored_s = time.perf_counter() - started
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {ADMIN}"}
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            idle = vm(server.pid)
            listed = time.perf_counter()
            page = httpx.get(
                f"{base}/api/v1/runs", params={"limit": 50}, headers=headers, timeout=120
            ).json()
            list_s = time.perf_counter() - listed
            after = vm(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    print(
        json.dumps(
            {
                "benchmark": "coordinator_rss",
                "db": args.db,
                "finished_jobs": args.jobs,
                "store_s": round(stored_s, 1),
                "server_rss_mib_idle": idle.get("VmRSS"),
                "list_runs_s": round(list_s, 3),
                "runs_listed": len(page["items"]),
                "server_rss_mib_after_list": after.get("VmRSS"),
                "server_peak_rss_mib": after.get("VmHWM"),
            }
        )
    )


if __name__ == "__main__":
    main()
