"""`on.schedule`: each cron slot starts one run, even when several replicas fire it at
the same moment; old slots are not made up; unscheduled projects start nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from conveyor.intake.inbox import Intake
from conveyor.intake.schedules import DISCOVER_EVERY_S, FETCH_EVERY_S, Schedules, latest_slot
from conveyor.scheduler.service import Scheduler
from conveyor.storage.database import Database
from conveyor.storage.secrets import SecretBox
from conveyor.storage.tables import Project, Run, Team
from conveyor.vcs import MirrorSet
from tests.intake.conftest import commit, git

SCHEDULED = """\
version: 1
service: nightly
team: a
on:
  schedule:
    - {cron: "*/5 * * * *", name: every-five}
    - {cron: "0 3 * * *", branch: release}
jobs:
  build: {script: "echo nightly"}
"""


def test_latest_slot() -> None:
    now = datetime(2026, 11, 30, 7, 42, 13, tzinfo=UTC)
    assert latest_slot("*/5 * * * *", now) == datetime(2026, 11, 30, 7, 40, tzinfo=UTC)
    assert latest_slot("0 3 * * *", now) == datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    exact = datetime(2026, 11, 30, 7, 45, tzinfo=UTC)
    assert latest_slot("*/5 * * * *", exact) == exact


async def test_each_slot_fires_once_across_replicas(database: Database, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {"conveyor.yml": SCHEDULED})
    git(repo, "branch", "release")
    async with database.transaction() as session:
        team = Team(name="a")
        session.add(team)
        await session.flush()
        session.add(Project(team_id=team.id, name="nightly", repo_url=str(repo)))
        plain = Project(team_id=team.id, name="plain", repo_url=str(repo), config_path="none.yml")
        session.add(plain)
    created = datetime.now(UTC)
    box = SecretBox(b"k" * 32)
    replicas = [
        Schedules(Intake(Scheduler(database), box, MirrorSet(tmp_path / f"m{i}").get))
        for i in range(3)
    ]
    slot = latest_slot("*/5 * * * *", created + timedelta(minutes=5))
    # The moments below span 13 minutes from `slot`; the daily entry's 03:00 among them
    # fires too (a run from 02:45 to 03:00 UTC did): then start just after it.
    daily = slot.replace(hour=3, minute=0)
    if slot <= daily <= slot + timedelta(minutes=15):
        slot = daily + timedelta(minutes=5)
    at = slot + timedelta(seconds=20)
    passes = await asyncio.gather(*(r.fire_due(at) for r in replicas))
    fired = [f for one in passes for f in one]
    assert {f.entry for f in fired} == {"every-five"}
    assert all(f.slot == slot for f in fired)
    # Again, later in the same slot: nothing new.
    assert [await r.fire_due(at + timedelta(seconds=30)) for r in replicas] == [[], [], []]
    # The next slot fires once more; a slot older than the grace period does not.
    later = slot + timedelta(minutes=5, seconds=1)
    assert len(await replicas[1].fire_due(later)) == 1
    too_late = slot + timedelta(minutes=13)  # its slot (+10 min) is 3 min old: past grace
    assert await replicas[2].fire_due(too_late) == []
    # The daily entry on `release`, at 03:00 the next day.
    next_day = (created + timedelta(days=1)).replace(hour=3, minute=0, second=5, microsecond=0)
    daily = await replicas[0].fire_due(next_day)
    assert {f.entry for f in daily} == {"0 3 * * *@release", "every-five"}  # 03:00 is both
    async with database.transaction() as session:
        runs = (await session.scalars(select(Run))).all()
    refs = sorted(r.ref for r in runs)
    assert refs == ["refs/heads/main"] * 3 + ["refs/heads/release"]
    assert {r.event for r in runs} == {"schedule"}


PLAIN = "version: 1\nservice: plain\nteam: a\njobs:\n  build: {script: 'true'}\n"


async def test_only_scheduled_projects_are_fetched_every_minute(
    database: Database, tmp_path: Path
) -> None:
    repos = {}
    for name, pipeline in (("nightly", SCHEDULED), ("plain", PLAIN)):
        repos[name] = tmp_path / name
        repos[name].mkdir()
        git(repos[name], "init", "-q", "-b", "main")
        commit(repos[name], {"conveyor.yml": pipeline})
    async with database.transaction() as session:
        team = Team(name="a")
        session.add(team)
        await session.flush()
        for name, repo in repos.items():
            session.add(Project(team_id=team.id, name=name, repo_url=str(repo)))
    clock = [1000.0]
    schedules = Schedules(
        Intake(Scheduler(database), SecretBox(b"k" * 32), MirrorSet(tmp_path / "m").get),
        clock=lambda: clock[0],
    )
    at = datetime.now(UTC)
    await schedules.fire_due(at)
    assert schedules.fetches == 2  # nothing known yet: both
    clock[0] += FETCH_EVERY_S + 1
    await schedules.fire_due(at)
    assert schedules.fetches == 3  # only the project with schedules
    # A push adds a schedule to the plain project: found at its next, slower fetch.
    commit(repos["plain"], {"conveyor.yml": SCHEDULED.replace("nightly", "plain")})
    clock[0] += DISCOVER_EVERY_S
    await schedules.fire_due(at)
    assert schedules.fetches == 5
    clock[0] += FETCH_EVERY_S + 1
    await schedules.fire_due(at)
    assert schedules.fetches == 7  # both have schedules now


async def test_a_repository_that_cannot_be_fetched_is_tried_again_later_not_every_check(
    database: Database, tmp_path: Path
) -> None:
    async with database.transaction() as session:
        team = Team(name="a")
        session.add(team)
        await session.flush()
        session.add(Project(team_id=team.id, name="gone", repo_url=str(tmp_path / "none")))
    clock = [1000.0]
    schedules = Schedules(
        Intake(Scheduler(database), SecretBox(b"k" * 32), MirrorSet(tmp_path / "m").get),
        clock=lambda: clock[0],
    )
    at = datetime.now(UTC)
    assert await schedules.fire_due(at) == []  # the clone fails: logged, nothing fired
    assert schedules.fetches == 1
    clock[0] += 15
    await schedules.fire_due(at)
    assert schedules.fetches == 1, "not again at the next check"
    clock[0] += DISCOVER_EVERY_S
    await schedules.fire_due(at)
    assert schedules.fetches == 2, "again once its interval has passed"
