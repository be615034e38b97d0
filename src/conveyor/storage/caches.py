"""Job caches kept by the coordinator: one archive per (team, key), a size quota per team
with least-recently-used eviction, and hit/miss counters per team."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.domain.clock import utcnow
from conveyor.storage.tables import CacheEntry, Team


async def fetch(session: AsyncSession, team_id: uuid.UUID, key: str) -> bytes | None:
    """The archive for `key`, counting a hit or a miss for the team."""
    entry = await session.get(CacheEntry, (team_id, key))
    counter = Team.cache_hits if entry is not None else Team.cache_misses
    await session.execute(update(Team).where(Team.id == team_id).values({counter: counter + 1}))
    if entry is None:
        return None
    entry.hits += 1
    entry.last_used_at = utcnow()
    return entry.data


async def store(
    session: AsyncSession, team_id: uuid.UUID, key: str, data: bytes, quota: int
) -> list[str]:
    """Keep `data` under `key` (replacing it), then evict the team's least recently used
    archives until the team is within `quota` bytes. Returns the evicted keys."""
    entry = await session.get(CacheEntry, (team_id, key))
    if entry is None:
        session.add(CacheEntry(team_id=team_id, key=key, data=data, size=len(data)))
    else:
        entry.data, entry.size, entry.last_used_at = data, len(data), utcnow()
    await session.flush()
    total = await session.scalar(
        select(func.coalesce(func.sum(CacheEntry.size), 0)).where(CacheEntry.team_id == team_id)
    )
    evicted: list[str] = []
    if int(total or 0) <= quota:
        return evicted
    rows = await session.execute(
        select(CacheEntry.key, CacheEntry.size)
        .where(CacheEntry.team_id == team_id, CacheEntry.key != key)
        .order_by(CacheEntry.last_used_at)
    )
    excess = int(total or 0) - quota
    for old_key, size in rows.all():
        if excess <= 0:
            break
        evicted.append(old_key)
        excess -= size
    if evicted:
        await session.execute(
            delete(CacheEntry).where(CacheEntry.team_id == team_id, CacheEntry.key.in_(evicted))
        )
    return evicted
