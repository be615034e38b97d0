"""The agent's loop: join the coordinator with the host's facts, then long-poll for what
the host should run and converge to it, renewing the host's lease with every poll, and
watch the instances between polls, reporting whenever what a report carries changes. A
stale fence (the host joined again, or was found lost) makes it join again; a refusal
that retrying cannot change (a revoked token, another protocol) ends it with the
coordinator's reason; an unreachable coordinator is retried with a back-off short
enough to keep the lease."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from conveyor import __version__
from conveyor.agent.artifacts import ArtifactCache
from conveyor.agent.client import Link, Refusal, StaleFence
from conveyor.agent.instances import Instances
from conveyor.agent.routing import HostRoutes
from conveyor.agent.tasks import HostTasks
from conveyor.hosting.processes import LocalTarget
from conveyor.protocol.agent import Desired, DesiredInstance, Join, Joined, Report
from conveyor.waiting import event_or_timeout

log = logging.getLogger("conveyor.agent")
BACKOFF_S = (0.5, 4.0)
"""The first and the longest wait after a failed call (well under a lease)."""
WATCH_S = 0.25
"""How often the agent looks at its instances (and a router host at its routes) between
polls."""
USAGE_S = 5.0
"""While instances run, a report is sent at least this often, for their RSS and CPU time
(the `process` analysis provider reads them): usage changes all the time, so it is not
a change that sends a report by itself."""
CACHE_BYTES = 10 * 2**30


@dataclass(frozen=True)
class HostFacts:
    """What the agent says of its host."""

    name: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    slots: int | None = None
    memory: int | None = None
    router: bool = False

    def join(self) -> Join:
        return Join(
            name=self.name,
            address=self.address,
            labels=self.labels,
            slots=self.slots,
            memory=self.memory,
            router=self.router,
            version=__version__,
        )


class HostAgent:
    def __init__(
        self,
        facts: HostFacts,
        client: Link,
        data_dir: Path,
        cache_bytes: int = CACHE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.facts = facts
        self.client = client
        self.target = LocalTarget(data_dir / "host")
        self.cache = ArtifactCache(data_dir / "artifacts", cache_bytes)
        self.instances = Instances(self.target, self._fetch, facts.address)
        self.tasks = HostTasks(self.target, self._fetch)
        self.routes = HostRoutes(data_dir / "router", facts.address) if facts.router else None
        """A router host's routes (None: not a router)."""
        self.joined: Joined | None = None
        self.desired: Desired | None = None
        self.wanted: list[DesiredInstance] = []
        self.joins = 0
        self.reports = 0
        self.clock = clock
        self._reported_at = -USAGE_S
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        await self.target.close()
        if self.routes is not None:
            await self.routes.close()

    async def serve(self) -> None:
        """Until stopped; Refusal when the coordinator will not have this host. The
        instances keep running when the agent stops (its next start adopts them)."""
        wait = BACKOFF_S[0]
        while not self._stopping.is_set():
            try:
                await self._poll()
                wait = BACKOFF_S[0]
            except StaleFence as exc:
                log.warning("host %s: %s; joining again", self.facts.name, exc)
                self.joined = None
            except (httpx.HTTPError, OSError) as exc:
                log.warning("coordinator unreachable (%s); again in %.1f s", exc, wait)
                if await event_or_timeout(self._stopping, wait):
                    return
                wait = min(wait * 2, BACKOFF_S[1])

    async def _poll(self) -> None:
        if self.joined is None:
            self.joined = await self.client.join(self.facts.join())
            self.joins += 1
            self.desired = None
            log.info(
                "host %s joined (fence %d, lease %.0f s)",
                self.facts.name,
                self.joined.fence,
                self.joined.lease_s,
            )
        joined = self.joined
        known = self.desired.generation if self.desired is not None else 0
        poll = asyncio.ensure_future(
            self.client.desired(joined.host_id, joined.fence, known, joined.poll_s)
        )
        try:
            while not poll.done():
                if await self._watch() or self._usage_due():
                    await self._report()
                await asyncio.wait({poll}, timeout=WATCH_S)
                if self._stopping.is_set():
                    return
            desired = poll.result()
        finally:
            poll.cancel()
        if desired.generation != known:
            self._note(desired)
            self.desired = desired
            if desired.instances is not None:
                self.wanted = desired.instances
        await self.instances.converge(self.wanted, desired.stop_grace_s)
        if self.routes is not None and desired.routes is not None:
            await self.routes.converge(desired.routes)
        if desired.tasks is not None:
            await self.tasks.converge(desired.tasks)
        await self._watch()
        if desired.generation != known:
            await self._report()

    async def _report(self) -> None:
        if self.joined is None or self.desired is None:
            return
        routes, served = None, []
        if self.routes is not None:
            routes, served = await self.routes.observed(), list(self.routes.pending)
        body = Report(
            fence=self.joined.fence,
            generation=self.desired.generation,
            instances=self.instances.observed(),
            routes=routes,
            served=served,
            tasks=self.tasks.observed(),
        )
        await self.client.report(self.joined.host_id, body)
        if self.routes is not None:  # reported: those summaries are the coordinator's now
            del self.routes.pending[: len(served)]
        self.reports += 1
        self._reported_at = self.clock()

    async def _watch(self) -> bool:
        """Look at the instances (and a router host's routes) once; whether anything a
        report carries changed."""
        changed = await self.instances.watch()
        changed = self.tasks.watch() or changed
        if self.routes is not None:
            changed = await self.routes.watch() or changed
        return changed

    def _usage_due(self) -> bool:
        """Instances run and their usage was last reported USAGE_S ago or more."""
        running = any(r.running for r in self.instances.running.values())
        return running and self.clock() - self._reported_at >= USAGE_S

    async def _fetch(self, digest: str) -> Path:
        assert self.joined is not None
        in_use = frozenset(r.wanted.digest for r in self.instances.running.values())
        return await self.client.fetch(
            self.cache, self.joined.host_id, self.joined.fence, digest, in_use
        )

    def _note(self, desired: Desired) -> None:
        if self.desired is None or desired.draining != self.desired.draining:
            log.info(
                "host %s: generation %d%s",
                self.facts.name,
                desired.generation,
                " (draining)" if desired.draining else "",
            )


__all__ = ["HostAgent", "HostFacts", "Refusal"]
