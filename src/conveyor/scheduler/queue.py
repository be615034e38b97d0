"""Which pending job a runner gets: fair share between teams, team quotas, concurrency
groups and runner labels. Used by Scheduler.claim."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import ColumnElement, cast, exists, func, literal, or_, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from conveyor.domain.status import JobStatus
from conveyor.pipeline.plan import PlannedJob
from conveyor.pipeline.schema import ConcurrencyPolicy
from conveyor.storage.tables import Job, RunnerRow, Team

LABEL_SCAN = 50
"""How many of a team's oldest pending jobs a claim looks through for one whose labels the
runner has."""


async def next_pending(
    session: AsyncSession,
    runner: RunnerRow,
    take: Callable[[Job], Awaitable[bool]],
    *,
    postgres: bool,
) -> Job | None:
    """The job a runner gets next, or None (see Scheduler.claim for the order): the
    first candidate that `take` (a guarded UPDATE) succeeds on.

    On PostgreSQL the labels are tested in SQL and the one candidate is locked with SKIP
    LOCKED, so concurrent claims each lock a different job and none fails its UPDATE.
    SQLite has one writer at a time: the oldest LABEL_SCAN jobs are read, the labels
    tested here, and a candidate another claim took meanwhile fails `take`, so the next
    one is tried."""
    pending = [Job.status == JobStatus.PENDING.value]
    if runner.team_id is not None:
        pending.append(Job.team_id == runner.team_id)
    # The aggregate reads only the (status, team, queued_at) index; concurrency groups
    # are checked per candidate below, where the index walk stops early.
    # With each team's quota, in the same statement.
    found = (
        await session.execute(
            select(Job.team_id, func.min(Job.queued_at).label("oldest"), Team.max_running)
            .join(Team, Team.id == Job.team_id)
            .where(*pending)
            .group_by(Job.team_id, Team.max_running)
        )
    ).all()
    if not found:
        return None
    teams = [(team, oldest) for team, oldest, _ in found]
    quotas = {team: quota for team, _, quota in found}
    order = teams
    # Running counts and turns matter only between teams, or for a quota: with one team
    # and no quota (the common case) the claim skips both queries.
    if len(teams) > 1 or any(quotas.get(t) is not None for t, _ in teams):
        running = dict(
            (
                await session.execute(
                    select(Job.team_id, func.count())
                    .where(Job.status == JobStatus.RUNNING.value)
                    .group_by(Job.team_id)
                )
            ).all()
        )
        teams = [t for t in teams if under_quota(running.get(t[0], 0), quotas.get(t[0]))]
        order = await _fair_order(session, teams, running)
    have = set(runner.labels or [])
    for team, _ in order:
        query = (
            select(Job)
            .where(*pending, GROUP_FREE, Job.team_id == team)
            .order_by(Job.queued_at)  # the index order: the walk stops at the limit
        )
        if postgres:
            labels = func.coalesce(cast(Job.spec, JSONB)["labels"], literal([], JSONB))
            query = (
                query.where(labels.contained_by(literal(sorted(have), JSONB)))
                .limit(1)
                .with_for_update(skip_locked=True, of=Job)
            )
        else:
            query = query.limit(LABEL_SCAN)
        for job in (await session.execute(query)).scalars():
            if not set(job.spec.get("labels", ())) <= have:
                continue
            if await take(job):
                return job
    return None


async def _fair_order(
    session: AsyncSession, teams: list[Any], running: dict[Any, int]
) -> list[Any]:
    """Teams with fewer running jobs first, then the one served least recently."""
    if len(teams) < 2:
        return teams
    served = {
        team: await session.scalar(select(func.max(Job.started_at)).where(Job.team_id == team))
        for team, _ in teams
    }
    return sorted(
        teams,
        key=lambda t: (
            running.get(t[0], 0),
            served[t[0]] is not None,
            served[t[0]] or t[1],
            t[1],
        ),
    )


async def lock_group(session: AsyncSession, job: Job, *, postgres: bool) -> None:
    """On PostgreSQL, claims of one concurrency group take turns (until commit), so the
    guard in the UPDATE sees the other claim's running job."""
    if job.concurrency_group is not None and postgres:
        key = f"{job.team_id}/{job.concurrency_group}"
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def _group_free() -> ColumnElement[bool]:
    other = aliased(Job)
    busy = exists().where(
        other.team_id == Job.team_id,
        other.concurrency_group == Job.concurrency_group,
        other.status == JobStatus.RUNNING.value,
    )
    return or_(Job.concurrency_group.is_(None), ~busy)


GROUP_FREE = _group_free()
"""True for a job outside any concurrency group, or whose group has nothing running.
Built once: an aliased class costs more to make than the claim's queries to send."""


def under_quota(running: int, quota: int | None) -> bool:
    return quota is None or running < quota


def newest_wins(job: PlannedJob) -> bool:
    return job.concurrency is not None and job.concurrency.policy is ConcurrencyPolicy.NEWEST_WINS
