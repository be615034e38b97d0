"""Waking long-polling runner requests in this process when jobs become pending."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Hashable


class Wakeup:
    """Wakes long-polling runner requests in this process when jobs become pending: as
    many as there are new jobs, oldest waiter first, not all of them: a herd of requests
    that all query for one job costs the database for nothing. When runners of several
    kinds (team, labels) wait, twice as many, since a woken runner may not fit the job.
    A request that was not woken still looks again every `recheck_s`."""

    SLACK = 2

    def __init__(self) -> None:
        self._waiters: deque[tuple[asyncio.Future[None], Hashable]] = deque()
        self.generation = 0
        """Counts announcements: a claim that found nothing at generation g will find
        nothing again for the same kind of runner until it changes."""

    def notify(self, jobs: int = 1) -> None:
        self.generation += 1
        kinds = {kind for _, kind in self._waiters}
        wake = jobs * (self.SLACK if len(kinds) > 1 else 1)
        woken = 0
        while self._waiters and woken < wake:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken += 1

    async def wait(self, timeout: float, kind: Hashable = None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, kind)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
