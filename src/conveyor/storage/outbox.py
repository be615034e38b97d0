"""What the two outboxes share, the commit statuses (`statuses`) and the webhook
deliveries (`events`): a row is due while it is unsent and its `next_at` has come, and a
replica claims a batch of due rows by pushing their `next_at` past the claim."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update

from conveyor.domain.clock import utcnow
from conveyor.storage.database import Session
from conveyor.storage.tables import EventDelivery, StatusReport


async def claim_due(
    session: Session,
    table: type[StatusReport] | type[EventDelivery],
    limit: int,
    *,
    skip_locked: bool,
    hold_s: float,
) -> list[uuid.UUID]:
    """The ids of up to `limit` due rows, oldest first, claimed for `hold_s` (SKIP LOCKED
    on PostgreSQL, so that replicas take different rows)."""
    now = utcnow()
    query = (
        select(table.id)
        .where(table.sent_at.is_(None), table.next_at <= now)
        .order_by(table.created_at)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    ids = list((await session.scalars(query)).all())
    if ids:
        await session.execute(
            update(table).where(table.id.in_(ids)).values(next_at=now + timedelta(seconds=hold_s))
        )
    return ids
