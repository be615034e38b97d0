"""Storing webhook deliveries with group commit.

Each acknowledgement must wait until its delivery is durable, but one transaction per
delivery makes the database round trips the bottleneck. Deliveries that arrive while a
write is in flight wait for the next one, which stores all of them in one multi-row
INSERT … ON CONFLICT DO NOTHING. Under light load a batch holds one delivery (no added
latency); under a burst, batches grow and the cost per delivery falls.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from conveyor.storage.database import Database, insert_for
from conveyor.storage.tables import Delivery

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
        async with self.db.engine.begin() as conn:
            # executemany: one compiled (cached) statement, sent as multi-row INSERTs by
            # SQLAlchemy's "insertmanyvalues".
            result = await conn.execute(self._insert, [w.values for w in first.values()])
            inserted = {tuple(row) for row in result}
        self.batches += 1
        self.stored += len(inserted)
        for waiting in batch:
            new = waiting.key in inserted and first[waiting.key] is waiting
            waiting.done.set_result(waiting.values["id"] if new else None)
