"""Benchmark: the web UI with 10,000 runs and 100,000 jobs stored, and a live log fed
10,000 lines a second.

Stores --runs runs of --jobs-per-run jobs each in a fresh SQLite (or PostgreSQL)
database, starts `conveyor serve` on it (the UI included), logs in as the admin, and
times each page over --requests requests (server-side: the client's clock on loopback,
keep-alive). Then one job of the newest run is set running and its log is fed --lines
lines a second for --seconds seconds, straight into the database as a runner's chunks
(every 50 ms), while Chromium (Playwright, Debian's package) shows the job's page: the
lines shown over time, how far behind the writer the page is, and how long the page's
main thread takes to answer a probe every 100 ms (a frozen page answers late). Prints one
JSON object; nothing is asserted; stops the server it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from pgtemp import temporary_database
from sqlalchemy import func, select, update

from conveyor.pipeline.plan import compile_plan
from conveyor.pipeline.schema import PipelineSpec
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.scheduler.service import Scheduler
from conveyor.storage.database import Database, database_url
from conveyor.storage.logs import append_chunk
from conveyor.storage.migrate import upgrade
from conveyor.storage.tables import Job, Project, Run, Team

ADMIN = "cvy_admin_ui-bench"
STATUSES = ("success", "success", "success", "failed", "canceled")


async def store(db: Database, runs: int, per_run: int) -> None:
    await upgrade(db)
    async with db.transaction() as session:
        team = Team(name="t")
        session.add(team)
        await session.flush()
        session.add(Project(team_id=team.id, name="p", repo_url="file:///none"))
    async with db.transaction() as session:
        project = (await session.execute(select(Project))).scalar_one()
    scheduler = Scheduler(db)
    jobs = {
        f"j{i}": {"script": "true", "needs": [f"j{i - 1}"] if i else []} for i in range(per_run)
    }
    spec = PipelineSpec.model_validate({"service": "p", "team": "t", "jobs": jobs})
    for n in range(runs):
        plan = compile_plan(
            spec, Event(EventKind.PUSH, f"refs/heads/{'main' if n % 2 else 'dev'}", sha=f"{n:040d}")
        )
        await scheduler.start_run(project, plan, pipeline="p")
    async with db.transaction() as session:
        for index, status in enumerate(STATUSES):
            ids = select(Run.id).where(Run.sha.like(f"%{index}"))
            await session.execute(update(Job).where(Job.run_id.in_(ids)).values(status=status))
        left = Job.status.in_(("created", "pending"))
        await session.execute(update(Job).where(left).values(status="success"))


async def wait_marked(data: Path, url: str | None, limit_s: float = 600) -> float:
    """Until the server has seen every stored run finished (its metrics loop marks 500
    runs every 5 s, and keeps each one's status for the lists' filters)."""
    db = Database(database_url(data, url))
    began = time.monotonic()
    try:
        while time.monotonic() - began < limit_s:
            async with db.transaction() as session:
                left = await session.scalar(
                    select(func.count()).select_from(Run).where(Run.final_status.is_(None))
                )
            if not left:
                break
            await asyncio.sleep(1)
    finally:
        await db.dispose()
    return round(time.monotonic() - began, 1)


async def set_running(data: Path, url: str | None, job_id: str) -> None:
    import uuid

    db = Database(database_url(data, url))
    try:
        async with db.transaction() as session:
            await session.execute(
                update(Job).where(Job.id == uuid.UUID(job_id)).values(status="running")
            )
    finally:
        await db.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def time_pages(url: str, requests: int) -> tuple[dict[str, Any], str, str]:
    client = httpx.Client(base_url=url, timeout=30)
    assert client.post("/login", data={"token": ADMIN}).status_code in (200, 303)
    runs = client.get("/p/t/p")
    run_id = re.search(r'href="/runs/([0-9a-f-]{36})"', runs.text)
    assert run_id is not None
    run = client.get(f"/runs/{run_id.group(1)}")
    job_id = re.search(r'href="/jobs/([0-9a-f-]{36})"', run.text)
    assert job_id is not None
    pages = {
        "overview /": "/",
        "runs (newest 50)": "/p/t/p",
        "runs, status=failed": "/p/t/p?status=failed",
        "runs, status=running (none match: every run is read)": "/p/t/p?status=running",
        "runs, ref=main": "/p/t/p?ref=main",
        "a run (10 jobs, graph)": f"/runs/{run_id.group(1)}",
        "a run's live fragment": f"/runs/{run_id.group(1)}/graph",
        "a job's log page": f"/jobs/{job_id.group(1)}",
        "approvals": "/approvals",
        "deliveries": "/p/t/p/deliveries",
    }
    out: dict[str, Any] = {}
    for name, path in pages.items():
        took = []
        for _ in range(requests):
            began = time.perf_counter()
            answer = client.get(path)
            took.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200, (path, answer.status_code)
        out[name] = {"p50_ms": percentile(took, 0.5), "p95_ms": percentile(took, 0.95)}
    client.close()
    return out, run_id.group(1), job_id.group(1)


async def feed(
    db: Database, job_id: str, lines: int, seconds: float, done: threading.Event
) -> dict[str, Any]:
    """`lines` lines a second for `seconds`, in chunks every 50 ms, as a runner sends them."""
    import uuid

    job = uuid.UUID(job_id)
    async with db.transaction() as session:
        row = await session.get(Job, job)
        assert row is not None
        team = row.team_id
    offset, number, began = 0, 0, time.monotonic()
    every = 0.05
    while time.monotonic() - began < seconds:
        due = int((time.monotonic() - began + every) * lines)
        text = "".join(
            f"\x1b[32m{n:>8}\x1b[0m step output with some width to it, as builds print\n"
            for n in range(number + 1, due + 1)
        )
        number = due
        data = text.encode()
        async with db.transaction() as session:
            await append_chunk(session, team, job, offset, data)
        offset += len(data)
        await asyncio.sleep(every)
    async with db.transaction() as session:
        await session.execute(update(Job).where(Job.id == job).values(status="success"))
    done.set()
    return {"lines_written": number, "seconds": round(time.monotonic() - began, 2)}


def watch(url: str, job_id: str, seconds: float, started: threading.Event) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/login")
        page.fill("input[name=token]", ADMIN)
        page.click("button:has-text('Log in')")
        page.goto(f"{url}/jobs/{job_id}")
        started.set()
        samples, probes = [], []
        began = time.monotonic()
        while time.monotonic() - began < seconds + 10:
            t0 = time.perf_counter()
            page.evaluate("performance.now()")  # answered only when the main thread is free
            probes.append((time.perf_counter() - t0) * 1000)
            shown = int(page.inner_text("#log-count").split()[0])
            samples.append((round(time.monotonic() - began, 2), shown))
            status = page.inner_text("#job-status")
            if (
                status == "success" and samples[-1][1] == samples[-2][1]
                if len(samples) > 1
                else False
            ):
                break
            time.sleep(0.1)
        browser.close()
    return {
        "shown_over_time": samples[:: max(1, len(samples) // 20)],
        "lines_shown": samples[-1][1],
        "main_thread_probe_p50_ms": percentile(probes, 0.5),
        "main_thread_probe_p95_ms": percentile(probes, 0.95),
        "main_thread_probe_max_ms": round(max(probes), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--jobs-per-run", type=int, default=10)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-ui-") as tmp,
        temporary_database(args.db) as url,
    ):
        data = Path(tmp) / "data"
        began = time.monotonic()
        db = Database(database_url(data, url))
        asyncio.run(store(db, args.runs, args.jobs_per_run))
        asyncio.run(db.dispose())
        stored_s = time.monotonic() - began
        port = free_port()
        env = os.environ | {"CONVEYOR_ADMIN_TOKEN": ADMIN, "CONVEYOR_RATE_LIMIT": "100000/second"}
        if url:
            env["CONVEYOR_DATABASE_URL"] = url
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
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
            marked = asyncio.run(wait_marked(data, url))
            pages, _, job_id = time_pages(base, args.requests)
            asyncio.run(set_running(data, url, job_id))  # before the page opens its stream
            started, done = threading.Event(), threading.Event()
            result: dict[str, Any] = {}

            def browse() -> None:
                result["browser"] = watch(base, job_id, args.seconds, started)

            viewer = threading.Thread(target=browse)
            viewer.start()
            started.wait(60)
            writer_db = Database(database_url(data, url))

            async def writing() -> dict[str, Any]:
                try:
                    return await feed(writer_db, job_id, args.lines, args.seconds, done)
                finally:
                    await writer_db.dispose()

            written = asyncio.run(writing())
            viewer.join(120)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    print(
        json.dumps(
            {
                "db": args.db,
                "runs": args.runs,
                "jobs": args.runs * args.jobs_per_run,
                "stored_s": round(stored_s, 1),
                "marked_finished_s": marked,
                "pages": pages,
                "live_log": {"written": written, **result.get("browser", {})},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
