"""Benchmark: how long a Prometheus scrape of `/metrics` takes on a coordinator that serves
50 teams and 500 projects.

Stores, in a fresh SQLite or PostgreSQL database, --teams teams of --projects/--teams
projects each; per project one production environment with a succeeded deployment (the
DORA gauges) and three finished runs (success, failed, canceled: the series of
`conveyor_runs_finished_total`, 3 per project); per team two pending jobs and one running
(the queue gauges); `--no-environments` leaves the environments out. Then `conveyor
serve` (with --workers N, prometheus-client's multiprocess mode) counts them as it does
every 5 s, and the benchmark waits until every run is counted, so the scrape carries
every series. It then scrapes --scrapes times with the scrape token over one keep-alive
connection, as Prometheus does, and reports the time of each scrape on the client's
clock (median, p95, max), the body's size and its number of series. Prints one JSON
object; asserts nothing; loopback only; stops the server it started and the HAProxy it
left (killing the server if SIGTERM has not stopped it within 30 s:
`stopped_on_sigterm` says which).
Run: `python bench/metrics_scrape.py [--db sqlite|postgres] [--workers 1] [--scrapes 200]
[--no-environments]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from pgtemp import temporary_database

from conveyor.domain.clock import utcnow
from conveyor.storage.database import Database, database_url
from conveyor.storage.migrate import upgrade
from conveyor.storage.tables import Artifact, Deployment, Environment, Job, Project, Run, Team

ADMIN = "cvy_admin_scrape"
SCRAPE = "scrape-token-0123456789"
FINISHED = ("success", "failed", "canceled")
DEADLINE_S = 120.0


async def store(db: Database, teams: int, projects: int, environments: bool) -> int:
    """The seeded history; returns how many runs finished (each one becomes counted)."""
    await upgrade(db)
    now = utcnow()
    runs = 0
    async with db.transaction() as session:
        for t in range(teams):
            team = Team(name=f"team-{t:02d}")
            session.add(team)
            await session.flush()
            for p in range(projects // teams):
                project = Project(
                    team_id=team.id,
                    name=f"svc-{p:02d}",
                    repo_url="file:///none",
                    production=["production"],
                )
                session.add(project)
                await session.flush()
                artifact = Artifact(
                    team_id=team.id,
                    project_id=project.id,
                    name="build",
                    digest=f"sha256:{t:032d}{p:032d}",
                    size=1,
                    media_type="application/x-tar",
                )
                session.add(artifact)
                await session.flush()
                if environments:
                    env = Environment(
                        team_id=team.id,
                        project_id=project.id,
                        name="production",
                        # Below Linux's ephemeral range (32768-60999), where the
                        # database connections' own ports would collide with them.
                        port=20000 + t * 100 + p,
                        preview_port=25000 + t * 100 + p,
                    )
                    session.add(env)
                    await session.flush()
                    session.add(
                        Deployment(
                            team_id=team.id,
                            project_id=project.id,
                            environment_id=env.id,
                            number=1,
                            digest=artifact.digest,
                            artifact_id=artifact.id,
                            runtime={},
                            strategy={"kind": "rolling"},
                            phase="succeeded",
                            created_at=now - timedelta(hours=2),
                            started_at=now - timedelta(hours=2),
                            finished_at=now - timedelta(hours=1),
                            committed_at=now - timedelta(hours=3),
                        )
                    )
                for n, status in enumerate(FINISHED):
                    run = Run(
                        team_id=team.id,
                        project_id=project.id,
                        event="push",
                        ref="refs/heads/main",
                        sha=f"{n:040d}",
                        created_at=now - timedelta(minutes=10),
                    )
                    session.add(run)
                    await session.flush()
                    session.add(
                        Job(team_id=team.id, run_id=run.id, name="build", spec={}, status=status)
                    )
                    runs += 1
            queued = Run(
                team_id=team.id,
                project_id=project.id,
                event="push",
                ref="refs/heads/queued",
                sha="f" * 40,
            )
            session.add(queued)
            await session.flush()
            for n, status in enumerate(("pending", "pending", "running")):
                session.add(
                    Job(team_id=team.id, run_id=queued.id, name=f"j{n}", spec={}, status=status)
                )
    return runs


def series(body: str, name: str) -> int:
    return sum(1 for line in body.splitlines() if line.startswith(name + "{"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument(
        "--no-environments",
        action="store_true",
        help="No production environment per project (no deployment driver per environment).",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-scrape-") as tmp,
        temporary_database(args.db) as url,
    ):
        data = Path(tmp) / "data"
        env = os.environ | {"CONVEYOR_ADMIN_TOKEN": ADMIN, "CONVEYOR_METRICS_TOKEN": SCRAPE}
        env.pop("CONVEYOR_DATABASE_URL", None)
        if url:
            env["CONVEYOR_DATABASE_URL"] = url
        db = Database(database_url(data, url))
        environments = not args.no_environments
        finished = asyncio.run(store(db, args.teams, args.projects, environments))
        asyncio.run(db.dispose())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "conveyor", "serve", "--port", str(port)]
        command += ["--data-dir", str(data), "--workers", str(args.workers)]
        stopped = True
        server = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            base = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {SCRAPE}"}
            deadline = time.monotonic() + DEADLINE_S
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                body = ""
                while time.monotonic() < deadline:
                    try:
                        answer = client.get("/metrics")
                    except httpx.HTTPError:
                        time.sleep(0.2)
                        continue
                    body = answer.text if answer.status_code == 200 else ""
                    counted = sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in body.splitlines()
                        if line.startswith("conveyor_runs_finished_total{")
                    )
                    dora_due = args.teams * 4 if environments else 0
                    if counted >= finished and series(body, "conveyor_dora") >= dora_due:
                        break
                    time.sleep(0.5)
                took: list[float] = []
                size = 0
                for _ in range(args.scrapes):
                    began = time.perf_counter()
                    answer = client.get("/metrics")
                    took.append(time.perf_counter() - began)
                    answer.raise_for_status()
                    size = len(answer.content)
                    body = answer.text
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
                stopped = False
            # The seeded environments make the deployment manager start HAProxy, which
            # outlives `serve` on purpose: stop it.
            subprocess.run(
                [sys.executable, "-m", "conveyor", "down", "--data-dir", str(data)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                timeout=60,
            )
    ms = sorted(t * 1000 for t in took)
    print(
        json.dumps(
            {
                "benchmark": "metrics_scrape",
                "db": args.db,
                "workers": args.workers,
                "teams": args.teams,
                "projects": args.projects,
                "environments": args.projects if environments else 0,
                "runs_counted": finished,
                "scrapes": len(ms),
                "scrape_ms_median": round(statistics.median(ms), 2),
                "scrape_ms_p95": round(ms[int(0.95 * (len(ms) - 1))], 2),
                "scrape_ms_max": round(ms[-1], 2),
                "body_bytes": size,
                "series": sum(1 for line in body.splitlines() if line and line[0] != "#"),
                "runs_finished_series": series(body, "conveyor_runs_finished_total"),
                "dora_series": series(body, "conveyor_dora"),
                "stopped_on_sigterm": stopped,
            }
        )
    )


if __name__ == "__main__":
    main()
