"""Job logs as chunks keyed by (job id, byte offset): a re-sent chunk is written once."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.storage.database import insert_for
from conveyor.storage.tables import LogChunk


async def append_chunk(
    session: AsyncSession, team_id: uuid.UUID, job_id: uuid.UUID, offset: int, data: bytes
) -> None:
    """Insert the chunk unless one already starts at that offset."""
    values = {"job_id": job_id, "offset": offset, "team_id": team_id, "data": data}
    await session.execute(insert_for(session)(LogChunk).values(**values).on_conflict_do_nothing())


async def read_log(session: AsyncSession, job_id: uuid.UUID, offset: int = 0) -> bytes:
    """The log from byte `offset` on (chunks are contiguous when runners behave)."""
    rows = await session.execute(
        select(LogChunk.offset, LogChunk.data)
        .where(LogChunk.job_id == job_id, LogChunk.offset + func.length(LogChunk.data) > offset)
        .order_by(LogChunk.offset)
    )
    out = bytearray()
    end = offset
    for start, data in rows.all():
        if start > end:
            break  # a gap: a chunk has not arrived yet
        out += data[max(0, end - start) :]
        end = max(end, start + len(data))
    return bytes(out)


async def log_end(session: AsyncSession, job_id: uuid.UUID) -> int:
    """The byte offset just past the job's stored log."""
    end = await session.scalar(
        select(func.max(LogChunk.offset + func.length(LogChunk.data))).where(
            LogChunk.job_id == job_id
        )
    )
    return int(end or 0)
