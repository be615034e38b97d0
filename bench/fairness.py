"""Benchmark: fair share between teams, and the cost of one scheduling pass.

In-process scheduler on a real database (SQLite by default, `--db postgres` for a
throwaway PostgreSQL database):
- team A queues --flood jobs (default 10,000), then team B queues one; runners keep
  claiming (and finishing at once); we count the claims and the time until B's job runs;
- one scheduling pass (`claim`) with --pending jobs waiting (default 100,000);
- the process's RSS after those jobs are stored and finished.
Prints one JSON object; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from pgtemp import temporary_database
from sqlalchemy import update

from conveyor.domain.status import JobStatus
from conveyor.pipeline.plan import compile_plan
from conveyor.pipeline.schema import PipelineSpec
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.protocol.runner import AttemptOutcome
from conveyor.scheduler.service import Scheduler
from conveyor.storage.database import Database, database_url
from conveyor.storage.migrate import upgrade
from conveyor.storage.tables import Job, Project, RunnerRow, Team

DONE = AttemptOutcome(status=JobStatus.SUCCESS, exit_code=0)


def plan_of(team: str, jobs: int, sha: str):  # type: ignore[no-untyped-def]
    """A run of `jobs` independent jobs (built as data: a YAML file that size would pass
    the loader's bound on values)."""
    spec = PipelineSpec.model_validate(
        {
            "version": 1,
            "service": "s",
            "team": team,
            "jobs": {f"j{i}": {"script": "true", "needs": []} for i in range(jobs)},
        }
    )
    return compile_plan(spec, Event(EventKind.MANUAL, f"refs/heads/{sha[:8]}", sha=sha))


async def project(db: Database, name: str) -> Project:
    async with db.transaction() as session:
        team = Team(name=name)
        session.add(team)
        await session.flush()
        row = Project(team_id=team.id, name=name, repo_url="file:///bench")
        session.add(row)
    return row


async def run(db: Database, flood: int, pending: int) -> dict[str, object]:
    await upgrade(db)
    scheduler = Scheduler(db)
    a, b = await project(db, "a"), await project(db, "b")
    async with db.transaction() as session:
        runner = RunnerRow(name="bench", token_hash="bench")
        session.add(runner)
    await scheduler.start_run(a, plan_of("a", flood, "1" * 40), pipeline="p")
    b_started = time.perf_counter()
    await scheduler.start_run(b, plan_of("b", 1, "2" * 40), pipeline="p")
    claims = 0
    while True:
        got = await scheduler.claim(runner)
        assert got is not None
        claims += 1
        await scheduler.finish(got.job_id, got.fence, DONE)
        if got.team == "b":
            break
    b_wait = time.perf_counter() - b_started
    # One scheduling pass with `pending` jobs waiting.
    await scheduler.start_run(a, plan_of("a", pending, "3" * 40), pipeline="p")
    passes = []
    for _ in range(5):
        started = time.perf_counter()
        got = await scheduler.claim(runner)
        passes.append(time.perf_counter() - started)
        assert got is not None
        await scheduler.finish(got.job_id, got.fence, DONE)
    async with db.transaction() as session:
        await session.execute(update(Job).where(Job.status == "pending").values(status="success"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "flood_jobs": flood,
        "claims_until_team_b_ran": claims,
        "team_b_wait_ms": round(1000 * b_wait, 1),
        "pending_jobs": pending,
        "scheduling_pass_ms": round(1000 * min(passes), 1),
        "scheduling_pass_ms_max": round(1000 * max(passes), 1),
        "process_max_rss_mib_after_storing": round(rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flood", type=int, default=10_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-fair-") as tmp,
        temporary_database(args.db) as url,
    ):
        db = Database(database_url(Path(tmp), url))
        try:
            result = asyncio.run(run(db, args.flood, args.pending))
        finally:
            asyncio.run(db.dispose())
    print(json.dumps({"benchmark": "fairness", "db": args.db, **result}))


if __name__ == "__main__":
    main()
