"""DORA's four keys from a seeded deployment history, on SQLite and PostgreSQL: which
deployments count as production, which failed, when each recovered, and the figures
computed by hand for that history."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from conveyor.api.metrics import refresh_dora
from conveyor.domain.clock import utcnow
from conveyor.domain.dora import Band, figures
from conveyor.ids import new_id
from conveyor.observability import metrics
from conveyor.storage import dora
from conveyor.storage.database import Database
from conveyor.storage.tables import Deployment, Environment, Project, Team

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class History:
    """Deployments of one environment, numbered in order."""

    def __init__(self, team: Team, project: Project, env: Environment) -> None:
        self.team, self.project, self.env = team, project, env
        self.rows: list[Deployment] = []

    def add(
        self,
        phase: str,
        started: datetime,
        took: timedelta,
        *,
        committed: datetime | None = None,
        kind: str = "deploy",
        rollback_of: int | None = None,
        message: str = "",
        fix: bool = False,
    ) -> None:
        self.rows.append(
            Deployment(
                team_id=self.team.id,
                project_id=self.project.id,
                environment_id=self.env.id,
                number=len(self.rows) + 1,
                digest="sha256:" + "0" * 64,
                artifact_id=new_id(),
                runtime={},
                strategy={"kind": "rolling"},
                kind=kind,
                rollback_of=rollback_of,
                phase=phase,
                message=message,
                started_at=started,
                finished_at=started + took,
                committed_at=committed,
                fix=fix,
            )
        )


async def seed(database: Database, now: datetime) -> None:
    t0 = now - 10 * DAY
    t1, t2, t3 = t0 + DAY, t0 + 2 * DAY, t0 + 3 * DAY
    async with database.transaction() as session:
        a, b = Team(name="a"), Team(name="b")
        session.add_all([a, b])
        await session.flush()
        api = Project(team_id=a.id, name="api", repo_url="file:///api")
        web = Project(team_id=a.id, name="web", repo_url="file:///web", production=["live"])
        other = Project(team_id=b.id, name="api", repo_url="file:///b")
        session.add_all([api, web, other])
        await session.flush()
        envs = {
            key: Environment(team_id=p.team_id, project_id=p.id, name=name, port=1, preview_port=2)
            for key, p, name in (
                ("api-prod", api, "production"),
                ("api-staging", api, "staging"),
                ("web-live", web, "live"),
                ("web-production", web, "production"),  # not production: web names `live`
                ("b-prod", other, "prod"),
            )
        }
        session.add_all(envs.values())
        await session.flush()
        prod = History(a, api, envs["api-prod"])
        prod.add("succeeded", t0 - 25 * DAY, 5 * MIN, committed=t0 - 26 * DAY)  # before the window
        prod.add("succeeded", t0, 10 * MIN, committed=t0 - 2 * HOUR)  # lead 130 min
        prod.add("succeeded", t1, 5 * MIN, committed=t1 - HOUR)  # lead 65 min; rolled back
        prod.add("succeeded", t1 + 30 * MIN, 5 * MIN, kind="rollback", rollback_of=3)
        prod.add(
            "aborted",
            t2,
            3 * MIN,
            committed=t2 - HOUR,
            message="analysis canary failed: error rate 0.2 is above 0.01",
        )
        prod.add("aborted", t2 + HOUR, MIN, message="aborted by alice")  # not a rule
        prod.add("succeeded", t3, 10 * MIN, committed=t3 - 30 * MIN)  # lead 40 min; fixed
        prod.add("succeeded", t3 + HOUR, 10 * MIN, committed=t3 + 40 * MIN, fix=True)  # 30 min
        prod.add("progressing", now - MIN, timedelta(0))  # not ended: no finished_at
        prod.rows[-1].finished_at = None
        staging = History(a, api, envs["api-staging"])
        staging.add("succeeded", t0, MIN, committed=t0 - MIN)
        staging.add("aborted", t1, MIN, message="analysis x failed")
        live = History(a, web, envs["web-live"])
        live.add("succeeded", t1, MIN)  # uploaded artifact: no commit time
        ignored = History(a, web, envs["web-production"])
        ignored.add("succeeded", t1, MIN, committed=t1 - MIN)
        theirs = History(b, other, envs["b-prod"])
        theirs.add("succeeded", t1, MIN, committed=t1 - 3 * DAY)
        for history in (prod, staging, live, ignored, theirs):
            session.add_all(history.rows)


Seeded = tuple[Database, datetime, dict[str, uuid.UUID]]


@pytest.fixture
async def seeded(database: Database) -> Seeded:
    now = utcnow()
    await seed(database, now)
    async with database.transaction() as session:
        teams = {t.name: t.id for t in await session.scalars(select(Team))}
    return database, now, teams


async def test_the_four_keys_of_a_seeded_history(seeded: Seeded):
    database, now, teams = seeded
    team_a = teams["a"]
    async with database.transaction() as session:
        changes = await dora.changes(session, team_a, now - 30 * DAY, now)
    by_project = {(c.project, c.number): c for c in changes}
    assert set(by_project) == {("api", n) for n in (2, 3, 5, 6, 7, 8)} | {("web", 1)}
    assert by_project["api", 5].aborted_by_rule and not by_project["api", 6].aborted_by_rule
    found = figures(changes, 30)
    # Succeeded deploys: api 2, 3, 7, 8 and web 1 (rollbacks do not count).
    assert found.deployments == 5 and found.per_day == pytest.approx(5 / 30)
    # Leads 130, 65, 40 and 30 minutes (web 1 has no commit time): median 52.5 minutes.
    assert found.lead_times == 4 and found.lead_time_s == pytest.approx(52.5 * 60)
    # Changes: the five deploys and api 5 (aborted by an analysis under traffic); failed:
    # api 3 (rolled back), api 5 (aborted), api 7 (fixed by 8).
    assert (found.changes, found.failures, found.failure_rate) == (6, 3, 0.5)
    # Recovered in 30 (the rollback's end - 3's end), 3 (the abort) and 60 minutes
    # (8's end at t3 + 70 min - 7's end at t3 + 10 min): median 30 minutes.
    assert found.recoveries == 3 and found.recovery_s == pytest.approx(30 * 60)
    assert found.bands == {
        "deployment_frequency": Band.HIGH,
        "lead_time": Band.ELITE,
        "change_failure_rate": Band.LOW,
        "recovery": Band.ELITE,
    }
    assert found.band is Band.LOW


async def test_the_window_and_the_team_bound_what_counts(seeded: Seeded):
    database, now, teams = seeded
    team_a, team_b = teams["a"], teams["b"]
    async with database.transaction() as session:
        early = await dora.changes(session, team_a, now - 33 * DAY, now - 9 * DAY)
        earlier = await dora.changes(session, team_a, now - 40 * DAY, now - 9 * DAY)
        theirs = await dora.changes(session, team_b, now - 30 * DAY, now)
        every = await dora.changes(session, None, now - 30 * DAY, now)
    # Windows that end before t1: api 2 (t0), and api 1 (35 days ago) in the longer one.
    assert [(c.project, c.number) for c in early] == [("api", 2)]
    assert [(c.project, c.number) for c in earlier] == [("api", 1), ("api", 2)]
    assert [(c.team, c.project, c.number) for c in theirs] == [("b", "api", 1)]
    assert {c.team for c in every} == {"a", "b"} and len(every) == 8


async def test_the_dora_gauges_per_team(seeded: Seeded):
    database, _, _ = seeded
    await refresh_dora(database)
    value = metrics.dora.labels("a", "change_failure_rate")._value.get()
    assert value == 0.5
    assert metrics.dora.labels("a", "lead_time_seconds")._value.get() == pytest.approx(3150)
    # Team b's one deploy: 3 days from commit to production; it failed nothing.
    assert metrics.dora.labels("b", "lead_time_seconds")._value.get() == pytest.approx(
        3 * 86_400 + 60
    )
    assert metrics.dora.labels("b", "change_failure_rate")._value.get() == 0
    assert math.isnan(metrics.dora.labels("b", "recovery_seconds")._value.get())
