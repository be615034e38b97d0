"""What the gauges of `/metrics` count, read from the tables in a few grouped queries:
the job queue's depth per team, runners online, deployments in progress and the age of
the oldest, deployments waiting for approvals (observability.metrics; refreshed by the
coordinator's `metrics` loop)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.deploy import InstanceState, Phase
from conveyor.domain.hosts import HostState, state_of
from conveyor.domain.status import JobStatus
from conveyor.storage import policy
from conveyor.storage.database import Session
from conveyor.storage.tables import Deployment, Host, Instance, Job, RunnerRow, Team

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
    hosts: list[tuple[tuple[str, str, str], float]] = field(default_factory=list)
    """((team or "", pool or "", state), hosts)."""
    slots: list[tuple[tuple[str, str], float]] = field(default_factory=list)
    """((team or "", pool or ""), slots of hosts up or draining)."""
    slots_used: list[tuple[tuple[str, str], float]] = field(default_factory=list)
    """((team or "", pool or ""), instances placed on hosts up or draining)."""


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
    fleet = await _fleet(session)
    return Counts(
        hosts=fleet[0],
        slots=fleet[1],
        slots_used=fleet[2],
        approvals=[((team,), n) for team, n in sorted(approvals.items())],
        jobs=[((team, status), float(n)) for team, status, n in jobs.all()],
        runners=[((team or "",), float(n)) for team, n in runners.all()],
        deployments=[((team, phase), float(n)) for team, phase, n, _ in deployments],
        oldest=[((team,), age) for team, age in oldest.items()],
    )


async def _fleet(
    session: Session,
) -> tuple[
    list[tuple[tuple[str, str, str], float]],
    list[tuple[tuple[str, str], float]],
    list[tuple[tuple[str, str], float]],
]:
    """Hosts by team, pool and state; and the slots of those that are up or draining,
    and the instances placed on them."""
    rows = (
        await session.execute(
            select(Team.name, Host.pool, Host.state, Host.draining, Host.slots, Host.id)
            .select_from(Host)
            .outerjoin(Team, Team.id == Host.team_id)
        )
    ).all()
    placed = dict(
        (
            await session.execute(
                select(Instance.host_id, func.count())
                .where(
                    Instance.host_id.is_not(None),
                    Instance.state != InstanceState.STOPPED.value,
                )
                .group_by(Instance.host_id)
            )
        ).all()
    )
    states: dict[tuple[str, str, str], float] = {}
    slots: dict[tuple[str, str], float] = {}
    used: dict[tuple[str, str], float] = {}
    for team, pool, state, draining, host_slots, host_id in rows:
        key = (team or "", pool or "")
        name = state_of(state, draining)
        states[(*key, name.value)] = states.get((*key, name.value), 0.0) + 1
        if name is not HostState.LOST:
            slots[key] = slots.get(key, 0.0) + float(host_slots or 0)
            used[key] = used.get(key, 0.0) + float(placed.get(host_id, 0))
    return (
        sorted(states.items()),
        sorted(slots.items()),
        sorted(used.items()),
    )
