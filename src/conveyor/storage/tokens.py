"""Who may call: API tokens (the admin's and the teams'), runner registration tokens and
runners, each found by the sha256 of its token (the token itself is never stored)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text, update

from conveyor.domain.clock import as_utc
from conveyor.domain.principal import RunnerIdentity
from conveyor.domain.status import JobStatus
from conveyor.storage.database import Session
from conveyor.storage.tables import ApiToken, Job, RunnerRow, RunnerToken, Team
from conveyor.storage.values import record_of

BOOTSTRAP_LOCK = 0x436F6E77
"""The advisory lock replicas take turns on while they make sure an admin token exists."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token (never the token itself: only its sha256 is stored)."""

    id: uuid.UUID
    team_id: uuid.UUID | None
    name: str
    role: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A runner registration token: runners it registers join its team (or are shared)."""

    id: uuid.UUID
    team_id: uuid.UUID | None
    created_at: datetime


async def api_token(session: Session, digest: str) -> TokenRecord | None:
    found = await session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    return record_of(TokenRecord, found) if found is not None else None


def _identity(row: RunnerRow) -> RunnerIdentity:
    return RunnerIdentity(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        labels=tuple(str(label) for label in row.labels or ()),
        last_seen_at=row.last_seen_at,
    )


async def runner(session: Session, digest: str) -> RunnerIdentity | None:
    """The runner whose token has this sha256."""
    found = await session.scalar(select(RunnerRow).where(RunnerRow.token_hash == digest))
    return _identity(found) if found is not None else None


async def seen(session: Session, runner_id: uuid.UUID, at: datetime) -> None:
    """The runner was seen at `at`."""
    await session.execute(
        update(RunnerRow).where(RunnerRow.id == runner_id).values(last_seen_at=at)
    )


async def add_api_token(
    session: Session, team_id: uuid.UUID | None, name: str, role: str, digest: str
) -> TokenRecord:
    row = ApiToken(team_id=team_id, name=name, role=role, token_hash=digest)
    session.add(row)
    await session.flush()
    return record_of(TokenRecord, row)


async def add_registration(session: Session, team_id: uuid.UUID | None, digest: str) -> GrantRecord:
    row = RunnerToken(team_id=team_id, token_hash=digest)
    session.add(row)
    await session.flush()
    return record_of(GrantRecord, row)


async def registration(session: Session, digest: str) -> GrantRecord | None:
    found = await session.scalar(select(RunnerToken).where(RunnerToken.token_hash == digest))
    return record_of(GrantRecord, found) if found is not None else None


async def add_runner(
    session: Session, grant: GrantRecord, name: str, labels: list[str], digest: str
) -> RunnerIdentity:
    """A runner registered with `grant`, in the grant's team (or shared)."""
    row = RunnerRow(team_id=grant.team_id, name=name, labels=labels, token_hash=digest)
    session.add(row)
    await session.flush()
    return _identity(row)


async def take_bootstrap_turn(session: Session) -> None:
    """On PostgreSQL, replicas starting together take turns here (until commit), so they
    neither collide on one token nor each make an admin token of their own."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOTSTRAP_LOCK})


async def any_with_role(session: Session, role: str) -> bool:
    found = await session.scalar(select(ApiToken.id).where(ApiToken.role == role).limit(1))
    return found is not None


@dataclass(frozen=True)
class RunnerRecord:
    """A registered runner as `GET /api/v1/runners` lists it."""

    id: uuid.UUID
    name: str
    team: str | None
    """None: a shared runner (every team's jobs)."""
    labels: tuple[str, ...]
    last_seen_at: datetime
    running: int
    """Jobs it holds now."""


async def runners(session: Session, team_id: uuid.UUID | None) -> list[RunnerRecord]:
    """The registered runners, newest seen first: every one (team_id None, the admin), or
    a team's own and the shared ones."""
    running = (
        select(Job.runner_id, func.count().label("n"))
        .where(Job.status == JobStatus.RUNNING.value, Job.runner_id.is_not(None))
        .group_by(Job.runner_id)
        .subquery()
    )
    query = (
        select(RunnerRow, Team.name, func.coalesce(running.c.n, 0))
        .outerjoin(Team, Team.id == RunnerRow.team_id)
        .outerjoin(running, running.c.runner_id == RunnerRow.id)
        .order_by(RunnerRow.last_seen_at.desc(), RunnerRow.id)
    )
    if team_id is not None:
        query = query.where((RunnerRow.team_id == team_id) | RunnerRow.team_id.is_(None))
    rows = (await session.execute(query)).all()
    return [
        RunnerRecord(
            id=row.id,
            name=row.name,
            team=team,
            labels=tuple(str(label) for label in row.labels or ()),
            last_seen_at=as_utc(row.last_seen_at),
            running=int(count),
        )
        for row, team, count in rows
    ]
