"""Who may call: API tokens (the admin's and the teams'), runner registration tokens and
runners, each found by the sha256 of its token (the token itself is never stored)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, text

from conveyor.storage.database import Session
from conveyor.storage.tables import ApiToken, RunnerRow, RunnerToken

BOOTSTRAP_LOCK = 0x436F6E77
"""The advisory lock replicas take turns on while they make sure an admin token exists."""


async def api_token(session: Session, digest: str) -> ApiToken | None:
    found: ApiToken | None = await session.scalar(
        select(ApiToken).where(ApiToken.token_hash == digest)
    )
    return found


async def runner(session: Session, digest: str) -> RunnerRow | None:
    found: RunnerRow | None = await session.scalar(
        select(RunnerRow).where(RunnerRow.token_hash == digest)
    )
    return found


def seen(runner_row: RunnerRow, at: datetime) -> None:
    """The runner was seen at `at` (written when its session commits)."""
    runner_row.last_seen_at = at


def add_api_token(
    session: Session, team_id: uuid.UUID | None, name: str, role: str, digest: str
) -> ApiToken:
    row = ApiToken(team_id=team_id, name=name, role=role, token_hash=digest)
    session.add(row)
    return row


def add_registration(session: Session, team_id: uuid.UUID | None, digest: str) -> RunnerToken:
    row = RunnerToken(team_id=team_id, token_hash=digest)
    session.add(row)
    return row


async def registration(session: Session, digest: str) -> RunnerToken | None:
    found: RunnerToken | None = await session.scalar(
        select(RunnerToken).where(RunnerToken.token_hash == digest)
    )
    return found


async def add_runner(
    session: Session, grant: RunnerToken, name: str, labels: list[str], digest: str
) -> RunnerRow:
    """A runner registered with `grant`, in the grant's team (or shared)."""
    row = RunnerRow(team_id=grant.team_id, name=name, labels=labels, token_hash=digest)
    session.add(row)
    await session.flush()
    return row


async def take_bootstrap_turn(session: Session) -> None:
    """On PostgreSQL, replicas starting together take turns here (until commit), so they
    neither collide on one token nor each make an admin token of their own."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOTSTRAP_LOCK})


async def any_with_role(session: Session, role: str) -> bool:
    found = await session.scalar(select(ApiToken.id).where(ApiToken.role == role).limit(1))
    return found is not None
