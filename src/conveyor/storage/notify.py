"""Announcements between replicas on PostgreSQL: `pg_notify` sent at commit, and a
LISTEN connection that yields what every replica sent (decision 0009). SQLite has no
such channel; its announcements stay in their process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import psycopg
from sqlalchemy import text

from conveyor.storage.database import Database, Session

log = logging.getLogger("conveyor.storage")
RECONNECT_S = 1.0


async def announce(session: Session, channel: str, payload: str) -> None:
    """Send `payload` on `channel` when the transaction commits (PostgreSQL only)."""
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
    )


async def listen(db: Database, channel: str) -> AsyncIterator[str]:
    """Every payload sent on `channel`, by any replica, until cancelled. A lost
    connection is opened again after RECONNECT_S; what was sent meanwhile is missed
    (listeners look again on their own every few seconds)."""
    conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {channel}")
                async for note in conn.notifies():
                    yield note.payload
        except psycopg.Error as exc:
            log.warning("LISTEN %s lost (%s); reconnecting", channel, exc)
            await asyncio.sleep(RECONNECT_S)
