"""Idempotency records: one per (caller, method, route, key), claimed by inserting it,
answered by filling in the response (api.idempotency holds the semantics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.domain.clock import utcnow
from conveyor.storage.database import Database
from conveyor.storage.tables import IdempotencyRecord
from conveyor.storage.values import record_of


@dataclass(frozen=True)
class KeyOf:
    """Which request a record stands for."""

    owner: str
    method: str
    route: str
    key: str

    def where(self) -> tuple[ColumnElement[bool], ...]:
        return (
            IdempotencyRecord.owner == self.owner,
            IdempotencyRecord.method == self.method,
            IdempotencyRecord.route == self.route,
            IdempotencyRecord.key == self.key,
        )


async def purge_older(db: Database, moment: datetime) -> int:
    """Delete every record made before `moment`; returns how many."""
    async with db.transaction() as session:
        result = await session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < moment)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def claim(db: Database, of: KeyOf, fingerprint: str, ttl: timedelta) -> bool:
    """Insert the record for this request (after deleting an expired one); False when a
    live one exists: the request was made before."""
    async with db.transaction() as session:
        await session.execute(
            delete(IdempotencyRecord).where(
                *of.where(), IdempotencyRecord.created_at < utcnow() - ttl
            )
        )
    try:
        async with db.transaction() as session:
            session.add(
                IdempotencyRecord(
                    owner=of.owner,
                    method=of.method,
                    route=of.route,
                    key=of.key,
                    fingerprint=fingerprint,
                )
            )
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    """What a request with an idempotency key was: its fingerprint, and once it has
    one, its answer."""

    fingerprint: str
    status_code: int | None
    response: Any


async def find(db: Database, of: KeyOf) -> KeptAnswer | None:
    async with db.transaction() as session:
        found = await session.scalar(select(IdempotencyRecord).where(*of.where()))
        return record_of(KeptAnswer, found) if found is not None else None


async def answer(db: Database, of: KeyOf, status: int, response: Any) -> None:
    """Keep the response a repeat of the request gets."""
    async with db.transaction() as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(*of.where())
            .values(status_code=status, response=response)
        )


async def forget(db: Database, of: KeyOf) -> None:
    async with db.transaction() as session:
        await session.execute(delete(IdempotencyRecord).where(*of.where()))
