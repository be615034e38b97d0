"""An exclusive lock on a file, for processes that share a data directory (`serve
--workers N` starting up, replicas driving one HAProxy)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold `path` (created if missing, with its directory) locked until the block ends;
    other holders wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def exclusive_when_free(path: Path, every_s: float = 1.0) -> AsyncIterator[None]:
    """Hold `path` locked until the block ends, looking every `every_s` while another
    process holds it (without blocking the event loop). The lock goes with its process:
    when the holder dies, the next look takes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(every_s)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
