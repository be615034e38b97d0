"""The background loops every coordinator replica runs beside the API, supervised by
name: a loop that fails is logged and started again after a back-off (1 s, doubling to
30 s; back to 1 s once it has run a minute), so that one bug does not silently stop
webhooks or deployments on a replica that goes on answering requests.

    sweep          expire lost runner leases (every `sweep_s`)
    hosts          mark hosts whose agent's lease ran out as lost (every second)
    listen         wake waiting runners on other replicas' announcements (PostgreSQL)
    inbox          translate stored webhook deliveries into runs
    schedules      fire due `on.schedule` slots
    statuses       queue and send commit statuses
    deployments    claim environments and drive their deployments
    housekeeping   artifact retention and expired idempotency keys (hourly)
    metrics        the gauges of /metrics counted from the database (every 5 s)
    webhooks       fan out events and post the subscriptions' webhooks
    bus            lifecycle events to NATS JetStream as CDEvents (with `nats_url`)
    agent          this machine's own agent (with `embedded_agent`: embedded.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from conveyor.api import idempotency
from conveyor.api.state import Coordinator
from conveyor.domain.clock import utcnow
from conveyor.scheduler.service import Scheduler
from conveyor.storage import artifacts as artifacts_store
from conveyor.storage import events

log = logging.getLogger("conveyor.coordinator")
SHUTDOWN_WAIT_S = 5.0
BACKOFF_S = (1.0, 30.0)
"""The first and the longest wait before a failed loop starts again."""
HEALTHY_S = 60.0
"""A loop that ran this long before it failed starts again after the first back-off."""

Loop = Callable[[], Coroutine[Any, Any, None]]


class Loops:
    """Named loops, each in a task that starts it again when it fails."""

    def __init__(
        self,
        loops: dict[str, Loop],
        clock: Callable[[], float] = time.monotonic,
        backoff: tuple[float, float] = BACKOFF_S,
    ) -> None:
        self.loops = loops
        self.clock = clock
        self.backoff = backoff
        self.restarts: dict[str, int] = dict.fromkeys(loops, 0)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._supervise(name, loop), name=name)
            for name, loop in self.loops.items()
        ]

    async def _supervise(self, name: str, loop: Loop) -> None:
        first, longest = self.backoff
        wait = first
        while True:
            began = self.clock()
            try:
                await loop()
                return  # a loop that ends by itself is done
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background loop %s failed; it starts again in %.0f s", name, wait)
            self.restarts[name] += 1
            if self.clock() - began >= HEALTHY_S:
                wait = first
            await asyncio.sleep(wait)
            wait = min(wait * 2, longest)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, SHUTDOWN_WAIT_S)
            if not task.done():  # pragma: no cover - logged to find what hangs
                log.error("background loop %s did not stop", task.get_name())


async def sweep(scheduler: Scheduler, every: float) -> None:
    """Expire lost leases, on every replica (the guarded updates make that safe)."""
    while True:
        try:
            await scheduler.expire_leases()
        except Exception:  # pragma: no cover - logged, and the next pass retries
            log.exception("lease sweep failed")
        await asyncio.sleep(every)


async def lost_hosts(state: Coordinator, every: float = 1.0) -> None:
    """Hosts whose agent's lease ran out become lost, on every replica (the guarded
    update moves each one once)."""
    while True:
        try:
            await state.fleet.sweep()
        except Exception:  # pragma: no cover - logged, and the next pass retries
            log.exception("host sweep failed")
        await asyncio.sleep(every)


async def housekeeping(state: Coordinator, every: float, keep_days: int) -> None:
    """Artifact retention and expired idempotency keys, on every replica (deleting what
    is gone already is a no-op)."""
    while True:
        await asyncio.sleep(every)
        try:
            rows, blobs = await artifacts_store.collect_garbage(state.db, state.blobs, utcnow())
            if rows or blobs:
                log.info("artifact retention: %d artifact(s), %d blob(s) deleted", rows, blobs)
            keys = await idempotency.purge_expired(state.db, utcnow())
            if keys:
                log.info("idempotency: %d expired key(s) deleted", keys)
            async with state.db.transaction() as session:
                old = await events.prune(session, utcnow() - timedelta(days=keep_days))
            if old:
                log.info("events: %d older than %d days deleted", old, keep_days)
        except Exception:  # pragma: no cover - logged, and the next pass retries
            log.exception("housekeeping failed")
