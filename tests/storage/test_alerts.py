"""Alerts per environment on SQLite and PostgreSQL: a repeat of an alert updates it,
resolving it ends it, and only those that began since a moment count as firing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.storage import alerts
from conveyor.storage.alerts import Incoming
from conveyor.storage.database import Database
from conveyor.storage.tables import Environment, Project, Team

START = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def alert(name: str, status: str = "firing", starts: datetime = START) -> Incoming:
    return Incoming(
        fingerprint=f"fp-{name}",
        name=name,
        status=status,
        labels={"alertname": name},
        annotations={},
        starts_at=starts,
        ends_at=None if status == "firing" else starts + timedelta(minutes=1),
    )


async def test_repeats_update_and_only_alerts_since_a_moment_count(database: Database):
    async with database.transaction() as session:
        team = Team(name="t")
        session.add(team)
        await session.flush()
        project = Project(team_id=team.id, name="p", repo_url="file:///r")
        session.add(project)
        await session.flush()
        env = Environment(
            team_id=team.id, project_id=project.id, name="production", port=1, preview_port=2
        )
        session.add(env)
    async with database.transaction() as session:
        new = await alerts.record(
            session, env, [alert("Old", starts=START - timedelta(hours=1)), alert("Down")]
        )
        assert new == 2
    async with database.transaction() as session:
        assert await alerts.record(session, env, [alert("Down")]) == 0  # a repeat
        found = await alerts.firing(session, env.id, START - timedelta(seconds=1))
        assert [a.name for a in found] == ["Down"]  # Old began before: not counted
    async with database.transaction() as session:
        assert await alerts.record(session, env, [alert("Down", "resolved")]) == 0
        names = [a.name for a in await alerts.firing(session, env.id, START - timedelta(hours=2))]
        assert names == ["Old"]
