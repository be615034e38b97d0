"""What the gauges of `/metrics` count, read from the tables in a few grouped queries:
the job queue's depth per team, runners online, deployments in progress and the age of
the oldest, deployments waiting for approvals (observability.metrics; refreshed by the
coordinator's `metrics` loop)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.deploy import Phase
from conveyor.domain.status import JobStatus
from conveyor.storage import policy
from conveyor.storage.database import Session
from conveyor.storage.tables import Deployment, Job, RunnerRow, Team

ONLINE_S = 60
"""A runner that asked for work this recently is online."""


@dataclass(frozen=True)
class Counts:
    jobs: list[tuple[tuple[str, str], float]]
    """((team, status), jobs pending or running)."""
    runners: list[tuple[tuple[str], float]]
    """((team or "" for shared runners,), runners online)."""
    deployments: list[tuple[tuple[str, str], float]]
    """((team, phase), deployments pending, progressing or paused)."""
    oldest: list[tuple[tuple[str], float]]
    """((team,), seconds since the oldest progressing or paused deployment started)."""
    approvals: list[tuple[tuple[str], float]] = field(default_factory=list)
    """((team,), deployments waiting for approvals)."""


async def counts(session: Session, now: datetime | None = None) -> Counts:
    moment = now or utcnow()
    waiting = (JobStatus.PENDING.value, JobStatus.RUNNING.value)
    jobs = await session.execute(
        select(Team.name, Job.status, func.count())
        .join(Team, Team.id == Job.team_id)
        .where(Job.status.in_(waiting))
        .group_by(Team.name, Job.status)
    )
    runners = await session.execute(
        select(Team.name, func.count())
        .select_from(RunnerRow)
        .outerjoin(Team, Team.id == RunnerRow.team_id)
        .where(RunnerRow.last_seen_at > moment - timedelta(seconds=ONLINE_S))
        .group_by(Team.name)
    )
    active = (Phase.PENDING.value, Phase.PROGRESSING.value, Phase.PAUSED.value)
    deployments = (
        await session.execute(
            select(Team.name, Deployment.phase, func.count(), func.min(Deployment.started_at))
            .join(Team, Team.id == Deployment.team_id)
            .where(Deployment.phase.in_(active))
            .group_by(Team.name, Deployment.phase)
        )
    ).all()
    oldest: dict[str, float] = {}
    for team, phase, _, started in deployments:
        if started is not None and phase != Phase.PENDING.value:
            age = (moment - as_utc(started)).total_seconds()
            oldest[team] = max(oldest.get(team, 0.0), age)
    approvals: dict[str, float] = {}
    for item in await policy.waiting(session, None):
        approvals[item.team] = approvals.get(item.team, 0.0) + 1
    return Counts(
        approvals=[((team,), n) for team, n in sorted(approvals.items())],
        jobs=[((team, status), float(n)) for team, status, n in jobs.all()],
        runners=[((team or "",), float(n)) for team, n in runners.all()],
        deployments=[((team, phase), float(n)) for team, phase, n, _ in deployments],
        oldest=[((team,), age) for team, age in oldest.items()],
    )
