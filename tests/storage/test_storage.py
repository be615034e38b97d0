"""Storage on real SQLite and PostgreSQL, with migrations applied."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from conveyor.domain.status import JobStatus, RunStatus
from conveyor.storage.database import Database, DatabaseUrlError, database_url
from conveyor.storage.jobs import TransitionRejected, move_job, sources_of
from conveyor.storage.migrate import current_revision, head_revision, upgrade
from conveyor.storage.runs import create_run, derived_status, release_dedupe_key
from conveyor.storage.tables import Job, JobAttempt, Project, Run, Team
from tests.conftest import event, plan_for

PIPELINE = """\
jobs:
  build: {script: x, needs: []}
  test: {script: x, needs: [build]}
  flaky: {script: x, needs: [], allow_failure: true}
"""


async def make_project(db: Database, team: str = "payments") -> Project:
    async with db.transaction() as session:
        team_row = Team(name=team)
        session.add(team_row)
        await session.flush()
        project = Project(team_id=team_row.id, name="api", repo_url="file:///repo")
        session.add(project)
    return project


async def job_ids(db: Database, run_id) -> dict[str, object]:
    async with db.transaction() as session:
        rows = await session.execute(select(Job.name, Job.id).where(Job.run_id == run_id))
        return dict(rows.all())


async def build_job(db: Database):  # type: ignore[no-untyped-def]
    """A fresh run of PIPELINE; the id of its `build` job."""
    project = await make_project(db)
    async with db.transaction() as session:
        run = await create_run(session, project, plan_for(PIPELINE, event()), pipeline="p")
    return (await job_ids(db, run.run_id))["build"]


async def test_migrations_reach_head_and_are_idempotent(database: Database):
    assert await current_revision(database) == head_revision()
    await upgrade(database)
    assert await current_revision(database) == head_revision()


async def test_sqlite_runs_in_wal_mode(tmp_path: Path):
    db = Database(database_url(tmp_path))
    try:
        async with db.engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
        assert mode == "wal" and keys == 1
        assert db.url.database == str(tmp_path / "conveyor.db")
    finally:
        await db.dispose()


def test_database_urls(tmp_path: Path):
    assert database_url(tmp_path, "postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert database_url(tmp_path, "sqlite:///x.db").drivername == "sqlite+aiosqlite"
    with pytest.raises(DatabaseUrlError, match="unsupported database 'mysql'"):
        database_url(tmp_path, "mysql://u@h/db")


async def test_run_and_jobs_are_created_once_per_commit(database: Database):
    project = await make_project(database)
    plan = plan_for(PIPELINE, event())
    async with database.transaction() as session:
        first = await create_run(session, project, plan, pipeline="conveyor.yml")
    async with database.transaction() as session:
        again = await create_run(session, project, plan, pipeline="conveyor.yml")
    assert first.created and not again.created
    assert again.run_id == first.run_id
    assert set(await job_ids(database, first.run_id)) == {"build", "test", "flaky"}
    async with database.transaction() as session:
        other = await create_run(session, project, plan, pipeline="other/conveyor.yml")
    assert other.created and other.run_id != first.run_id


async def test_concurrent_creation_makes_one_run(database: Database):
    project = await make_project(database)
    plan = plan_for(PIPELINE, event())

    async def create() -> object:
        async with database.transaction() as session:
            return (await create_run(session, project, plan, pipeline="p")).run_id

    ids = await asyncio.gather(*(create() for _ in range(8)))
    assert len(set(ids)) == 1
    async with database.transaction() as session:
        count = len((await session.scalars(select(Run.id))).all())
    assert count == 1


async def test_a_canceled_run_frees_its_commit(database: Database):
    project = await make_project(database)
    plan = plan_for(PIPELINE, event())
    async with database.transaction() as session:
        first = await create_run(session, project, plan, pipeline="p")
        await release_dedupe_key(session, first.run_id)
    async with database.transaction() as session:
        second = await create_run(session, project, plan, pipeline="p")
    assert second.created and second.run_id != first.run_id


async def test_guarded_transitions(database: Database):
    build = await build_job(database)
    async with database.transaction() as session:
        await move_job(session, build, JobStatus.PENDING)
        await move_job(session, build, JobStatus.RUNNING)
    with pytest.raises(TransitionRejected, match="cannot move to pending: it is success") as caught:
        async with database.transaction() as session:
            await move_job(session, build, JobStatus.SUCCESS, exit_code=0)
            await move_job(session, build, JobStatus.PENDING)
    assert caught.value.current == "success"
    async with database.transaction() as session:
        # The failed transaction above rolled back as a whole: the job is still running.
        assert await session.scalar(select(Job.status).where(Job.id == build)) == "running"


async def test_stale_fence_is_rejected(database: Database):
    build = await build_job(database)
    async with database.transaction() as session:
        await move_job(session, build, JobStatus.PENDING)
        await move_job(session, build, JobStatus.RUNNING, fence=Job.fence + 1)
        # The lease expires: the job goes back to pending and is granted again (fence 2).
        await move_job(session, build, JobStatus.PENDING, expect_fence=1)
        await move_job(session, build, JobStatus.RUNNING, fence=Job.fence + 1)
    with pytest.raises(TransitionRejected, match="it is running"):
        async with database.transaction() as session:
            await move_job(session, build, JobStatus.SUCCESS, expect_fence=1)
    async with database.transaction() as session:
        await move_job(session, build, JobStatus.SUCCESS, expect_fence=2, exit_code=0)
        job = await session.get(Job, build)
        assert job is not None and (job.status, job.fence, job.exit_code) == ("success", 2, 0)


async def test_two_movers_race_and_exactly_one_wins(database: Database):
    build = await build_job(database)
    async with database.transaction() as session:
        await move_job(session, build, JobStatus.PENDING)

    async def claim() -> bool:
        try:
            async with database.transaction() as session:
                await move_job(session, build, JobStatus.RUNNING)
            return True
        except TransitionRejected:
            return False

    results = await asyncio.gather(*(claim() for _ in range(6)))
    assert results.count(True) == 1


async def test_status_is_derived_from_jobs(database: Database):
    project = await make_project(database)
    async with database.transaction() as session:
        run = await create_run(session, project, plan_for(PIPELINE, event()), pipeline="p")
    ids = await job_ids(database, run.run_id)
    async with database.transaction() as session:
        assert await derived_status(session, run.run_id) is RunStatus.QUEUED
        for name in ("build", "test", "flaky"):
            await move_job(session, ids[name], JobStatus.PENDING)
            await move_job(session, ids[name], JobStatus.RUNNING)
        assert await derived_status(session, run.run_id) is RunStatus.RUNNING
        await move_job(session, ids["build"], JobStatus.SUCCESS)
        await move_job(session, ids["test"], JobStatus.SUCCESS)
        await move_job(session, ids["flaky"], JobStatus.FAILED)
        assert await derived_status(session, run.run_id) is RunStatus.SUCCESS


async def test_every_team_table_carries_its_team(database: Database):
    for table in (Project, Run, Job, JobAttempt):
        assert "team_id" in table.__table__.columns


async def test_unique_team_names(database: Database):
    await make_project(database, "a")
    with pytest.raises(IntegrityError):
        await make_project(database, "a")


def test_sources_of():
    assert sources_of(JobStatus.RUNNING) == {JobStatus.PENDING}
    assert JobStatus.RUNNING in sources_of(JobStatus.PENDING)


async def test_replicas_starting_together_migrate_once(postgres_url: str, tmp_path: Path):
    """Several coordinators starting at once on one fresh PostgreSQL all come up migrated
    (they take turns on an advisory lock; without it they deadlock or fail)."""
    replicas = [Database(database_url(tmp_path, postgres_url)) for _ in range(4)]
    try:
        await asyncio.wait_for(asyncio.gather(*(upgrade(db) for db in replicas)), 60)
        for db in replicas:
            assert await current_revision(db) == head_revision()
    finally:
        for db in replicas:
            await db.dispose()


async def test_replicas_bootstrapping_together_share_one_admin_token(
    postgres_url: str, tmp_path: Path
):
    from conveyor.coordinator.components import bootstrap_admin
    from conveyor.coordinator.config import ServerConfig
    from conveyor.storage.tables import ApiToken

    replicas = [Database(database_url(tmp_path, postgres_url)) for _ in range(4)]
    try:
        await upgrade(replicas[0])
        config = ServerConfig(data_dir=tmp_path, admin_token="cvy_admin_shared")
        await asyncio.wait_for(
            asyncio.gather(*(bootstrap_admin(db, config) for db in replicas)), 60
        )
        async with replicas[0].transaction() as session:
            count = len((await session.scalars(select(ApiToken.id))).all())
        assert count == 1
    finally:
        for db in replicas:
            await db.dispose()


async def test_quick_transactions_skip_the_wal_flush_on_postgresql(database: Database):
    """`durable=False` commits do not wait for the disk on PostgreSQL; the default does.
    (SQLite in WAL mode with synchronous=NORMAL never waits at commit.)"""
    if database.is_sqlite:
        async with database.transaction(durable=False) as session:
            assert (await session.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
        return
    async with database.transaction(durable=False) as session:
        assert (await session.execute(text("SHOW synchronous_commit"))).scalar() == "off"
    async with database.transaction() as session:
        assert (await session.execute(text("SHOW synchronous_commit"))).scalar() == "on"


async def test_sqlite_transactions_of_a_process_take_turns(tmp_path: Path):
    """Decision 0015: one at a time, woken in turn (not by SQLite's busy handler); a
    transaction opened inside another in the same task does not wait for itself."""
    db = Database(database_url(tmp_path))
    await upgrade(db)
    inside = 0
    most = 0

    async def write(name: str) -> None:
        nonlocal inside, most
        async with db.transaction() as session:
            inside += 1
            most = max(most, inside)
            session.add(Team(name=name))
            await session.flush()
            await asyncio.sleep(0.01)  # other tasks run now, and must wait
            async with db.transaction() as nested:
                await nested.execute(text("SELECT 1"))
            inside -= 1

    try:
        await asyncio.wait_for(asyncio.gather(*(write(f"t{n}") for n in range(8))), 30)
        async with db.transaction() as session:
            assert len((await session.scalars(select(Team))).all()) == 8
    finally:
        await db.dispose()
    assert most == 1
