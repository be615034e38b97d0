"""The queries of a claim: the teams with pending jobs and their quotas, running counts
and turns, a team's candidate jobs (labels tested in SQL), and the guarded UPDATE that
leases one. The order of the teams is decided by domain.fair_share."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    cast,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import aliased

from conveyor.domain.fair_share import TeamQueue
from conveyor.domain.principal import RunnerIdentity
from conveyor.domain.status import JobStatus
from conveyor.storage.database import Session
from conveyor.storage.jobs import try_move
from conveyor.storage.tables import Job, Team

SCAN = 8
"""How many of a team's oldest eligible jobs a claim reads on SQLite, where nothing is
locked: should another process lease the first meanwhile, the next is tried."""


def _pending(team_id: uuid.UUID | None) -> list[ColumnElement[bool]]:
    where = [Job.status == JobStatus.PENDING.value]
    if team_id is not None:
        where.append(Job.team_id == team_id)
    return where


async def pending_teams(session: Session, runner: RunnerIdentity) -> list[TeamQueue]:
    """The teams with pending jobs this runner may take, with each one's oldest queued
    time and quota, in one aggregate over the (status, team, queued_at) index."""
    found = await session.execute(
        select(Job.team_id, func.min(Job.queued_at), Team.max_running)
        .join(Team, Team.id == Job.team_id)
        .where(*_pending(runner.team_id))
        .group_by(Job.team_id, Team.max_running)
    )
    # A pending job always has its queued_at (every move to pending sets it).
    return [TeamQueue(team, oldest, quota) for team, oldest, quota in found.all() if oldest]


async def running_by_team(session: Session) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(Job.team_id, func.count())
        .where(Job.status == JobStatus.RUNNING.value)
        .group_by(Job.team_id)
    )
    return {team: count for team, count in rows.all()}


async def last_served(
    session: Session, teams: Sequence[uuid.UUID]
) -> dict[uuid.UUID, datetime | None]:
    """When each team's most recent job started, in one grouped query."""
    rows = await session.execute(
        select(Job.team_id, func.max(Job.started_at))
        .where(Job.team_id.in_(list(teams)))
        .group_by(Job.team_id)
    )
    served: dict[uuid.UUID, datetime | None] = dict.fromkeys(teams)
    served.update({team: started for team, started in rows.all()})
    return served


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


@dataclass(frozen=True)
class Candidate:
    """What a claim needs of a pending job to lease it."""

    id: uuid.UUID
    team_id: uuid.UUID
    fence: int
    attempt: int
    concurrency_group: str | None


def _labels_within(have: tuple[str, ...], *, postgres: bool) -> ColumnElement[bool]:
    """True for a job whose `labels` (none: []) are all among `have`."""
    if postgres:
        labels = func.coalesce(cast(Job.spec, JSONB)["labels"], literal([], JSONB))
        within: ColumnElement[bool] = labels.contained_by(literal(list(have), JSONB))
        return within
    each = func.json_each(Job.spec, "$.labels").table_valued("value")
    missing = select(literal(1)).select_from(each).where(each.c.value.not_in(have))
    return not_(missing.exists())


@functools.lru_cache(maxsize=256)
def _candidates_query(
    runner_team: uuid.UUID | None, have: tuple[str, ...], postgres: bool
) -> Select[uuid.UUID, uuid.UUID, int, int, str | None]:
    """The query of `candidates` for one kind of runner, the team a parameter: built once
    per kind, as building it costs more than SQLite takes to answer it."""
    query = (
        select(Job.id, Job.team_id, Job.fence, Job.attempt, Job.concurrency_group)
        .where(
            *_pending(runner_team),
            GROUP_FREE,
            Job.team_id == bindparam("team"),
            _labels_within(have, postgres=postgres),
        )
        .order_by(Job.queued_at)  # the index order: the walk stops at the limit
    )
    if postgres:
        return query.limit(1).with_for_update(skip_locked=True, of=Job)
    return query.limit(SCAN)


async def candidates(
    session: Session, runner: RunnerIdentity, team_id: uuid.UUID, *, postgres: bool
) -> list[Candidate]:
    """The team's oldest pending jobs whose group is free and whose labels the runner
    has, tested in SQL on both databases (a job with labels no runner of the team has
    never hides the ones behind it). On PostgreSQL the one candidate is locked with SKIP
    LOCKED, so concurrent claims each lock a different job and none fails its UPDATE;
    SQLite has one writer at a time, and a candidate another process took meanwhile
    fails `lease`, so a few are read. Only the columns a lease needs are read: no job's
    spec is decoded."""
    have = tuple(sorted(set(runner.labels or [])))
    query = _candidates_query(runner.team_id, have, postgres)
    rows = await session.execute(query, {"team": team_id})
    return [Candidate(*row) for row in rows.all()]


async def lease(
    session: Session,
    job: Candidate,
    runner: RunnerIdentity,
    *,
    lease_s: float,
    now: datetime,
    postgres: bool,
) -> bool:
    """Lease `job` to `runner`: pending → running with the next fencing token, guarded
    by its status, its fence and its concurrency group being free. False when another
    claim got there first. On PostgreSQL, claims of one concurrency group take turns
    (an advisory lock until commit), so the guard sees the other claim's running job."""
    if job.concurrency_group is not None and postgres:
        key = f"{job.team_id}/{job.concurrency_group}"
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
    return await try_move(
        session,
        job.id,
        JobStatus.RUNNING,
        expect_fence=job.fence,
        guard=GROUP_FREE,
        fence=job.fence + 1,
        attempt=job.attempt + 1,
        runner_id=runner.id,
        lease_expires_at=now + timedelta(seconds=lease_s),
        started_at=now,
    )
