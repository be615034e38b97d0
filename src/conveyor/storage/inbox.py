"""The inbox's rows: deliveries stored with group commit, claimed in batches for
processing, and their outcomes recorded.

Storing: each acknowledgement must wait until its delivery is durable, but one transaction per

Each acknowledgement must wait until its delivery is durable, but one transaction per
delivery makes the database round trips the bottleneck. Deliveries that arrive while a
write is in flight wait for the next one, which stores all of them in one multi-row
INSERT … ON CONFLICT DO NOTHING. Under light load a batch holds one delivery (no added
latency); under a burst, batches grow and the cost per delivery falls.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.delivery import DeliveryState
from conveyor.storage.database import Database, Session, insert_for
from conveyor.storage.projects import ProjectRecord, project_of
from conveyor.storage.tables import Delivery, Project

MAX_BATCH = 256
KEY = ("project_id", "provider", "delivery_key")


@dataclass
class _Waiting:
    values: dict[str, Any]
    done: asyncio.Future[uuid.UUID | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def key(self) -> tuple[Any, ...]:
        return tuple(self.values[k] for k in KEY)


def _sort_key(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(part) for part in key)


class DeliveryWriter:
    """Inserts deliveries, one batch at a time; each caller learns whether its delivery
    was new (its id) or already stored (None)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[_Waiting] = []
        self._writing = False
        self.batches = 0
        self.stored = 0
        self._insert = (
            insert_for("sqlite" if db.is_sqlite else "postgresql")(Delivery)
            .on_conflict_do_nothing(index_elements=list(KEY))
            .returning(Delivery.project_id, Delivery.provider, Delivery.delivery_key)
        )

    async def store(self, values: dict[str, Any]) -> uuid.UUID | None:
        waiting = _Waiting(values)
        self._queue.append(waiting)
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._write_all())
        return await waiting.done

    async def _write_all(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._write(batch)
                except Exception as exc:
                    for waiting in batch:
                        if not waiting.done.done():
                            waiting.done.set_exception(exc)
        finally:
            self._writing = False

    async def _write(self, batch: list[_Waiting]) -> None:
        first: dict[tuple[Any, ...], _Waiting] = {}
        for waiting in batch:
            first.setdefault(waiting.key, waiting)
        # In key order: two replicas storing the same redelivered keys at the same moment
        # then wait on each other's rows in one order, never in a cycle (on PostgreSQL,
        # batches in arrival order deadlocked, and the loser's senders got 503).
        rows = [first[key].values for key in sorted(first, key=_sort_key)]
        async with self.db.engine.begin() as conn:
            # executemany: one compiled (cached) statement, sent as multi-row INSERTs by
            # SQLAlchemy's "insertmanyvalues".
            result = await conn.execute(self._insert, rows)
            inserted = {tuple(row) for row in result}
        self.batches += 1
        self.stored += len(inserted)
        for waiting in batch:
            new = waiting.key in inserted and first[waiting.key] is waiting
            waiting.done.set_result(waiting.values["id"] if new else None)


# -- processing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A stored webhook delivery."""

    id: uuid.UUID
    team_id: uuid.UUID
    project_id: uuid.UUID
    provider: str
    delivery_key: str
    event: str
    headers: dict[str, Any]
    body: bytes
    state: str
    attempts: int
    """Tries before this one (a claim counts the next)."""
    outcome: list[Any]
    runs: list[Any]
    received_at: datetime
    processed_at: datetime | None
    traceparent: str | None


def delivery_of(row: Delivery) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        team_id=row.team_id,
        project_id=row.project_id,
        provider=row.provider,
        delivery_key=row.delivery_key,
        event=row.event,
        headers=dict(row.headers),
        body=row.body,
        state=row.state,
        attempts=row.attempts,
        outcome=list(row.outcome),
        runs=list(row.runs),
        received_at=as_utc(row.received_at),
        processed_at=as_utc(row.processed_at) if row.processed_at else None,
        traceparent=row.traceparent,
    )


async def claim_due(
    session: Session, *, limit: int, hold_s: float, skip_locked: bool
) -> list[tuple[DeliveryRecord, ProjectRecord]]:
    """The next deliveries due, oldest first, with their projects, claimed for `hold_s`
    (their `not_before` pushed forward, one more attempt counted) in two statements."""
    now = utcnow()
    query = (
        select(Delivery, Project)
        .join(Project, Project.id == Delivery.project_id)
        .where(Delivery.state == DeliveryState.RECEIVED.value, Delivery.not_before <= now)
        .order_by(Delivery.not_before)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True, of=Delivery)
    rows = [(delivery_of(d), project_of(p)) for d, p in await session.execute(query)]
    ids = [delivery.id for delivery, _ in rows]
    if ids:
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(not_before=now + timedelta(seconds=hold_s), attempts=Delivery.attempts + 1)
            .execution_options(synchronize_session=False)
        )
    return rows


@dataclass(frozen=True)
class DeliveryOutcome:
    """What processing a delivery came to, to record on it."""

    delivery: uuid.UUID
    state: DeliveryState
    lines: list[str]
    runs: list[str]


_DELIVERIES = cast(Table, Delivery.__table__)  # Core: one statement, many parameter sets
_RECORD = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id == bindparam("delivery"),
        _DELIVERIES.c.state == DeliveryState.RECEIVED.value,
    )
    .values(
        state=bindparam("new_state"),
        outcome=bindparam("lines"),
        runs=bindparam("run_ids"),
        processed_at=bindparam("at"),
    )
)


async def record_outcomes(session: Session, outcomes: Sequence[DeliveryOutcome]) -> None:
    """The outcomes of a batch, in one statement run for each (executemany)."""
    now = utcnow()
    await session.execute(
        _RECORD,
        [
            {
                "delivery": o.delivery,
                "new_state": o.state.value,
                "lines": o.lines,
                "run_ids": o.runs,
                "at": now,
            }
            for o in outcomes
        ],
    )


async def postpone(session: Session, delivery_id: uuid.UUID, delay_s: float, note: str) -> None:
    """Retry a received delivery after `delay_s`, noting why."""
    await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.state == DeliveryState.RECEIVED.value)
        .values(not_before=utcnow() + timedelta(seconds=delay_s), outcome=[note])
    )


async def recent(session: Session, project_id: uuid.UUID, limit: int) -> list[DeliveryRecord]:
    """The project's newest deliveries, newest first."""
    rows = await session.scalars(
        select(Delivery)
        .where(Delivery.project_id == project_id)
        .order_by(Delivery.received_at.desc(), Delivery.id.desc())
        .limit(limit)
    )
    return [delivery_of(row) for row in rows]
