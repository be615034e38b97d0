"""The agent's loop: join the coordinator with the host's facts, then long-poll for what
the host should run and converge to it, renewing the host's lease with every poll. A
stale fence (the host joined again, or was found lost) makes it join again; a refusal
that retrying cannot change (a revoked token, another protocol) ends it with the
coordinator's reason; an unreachable coordinator is retried with a back-off short
enough to keep the lease."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import httpx

from conveyor import __version__
from conveyor.agent.client import AgentClient, Refusal, StaleFence
from conveyor.protocol.agent import Desired, Join, Joined
from conveyor.waiting import event_or_timeout

log = logging.getLogger("conveyor.agent")
BACKOFF_S = (0.5, 4.0)
"""The first and the longest wait after a failed call (well under a lease)."""


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
    def __init__(self, facts: HostFacts, client: AgentClient) -> None:
        self.facts = facts
        self.client = client
        self.joined: Joined | None = None
        self.desired: Desired | None = None
        self.joins = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def serve(self) -> None:
        """Until stopped; Refusal when the coordinator will not have this host."""
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
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not poll.done():
            poll.cancel()
            return
        desired = poll.result()
        if desired.generation != known:
            self.converge(desired)

    def converge(self, desired: Desired) -> None:
        """Make the host run what `desired` says (so far: note it; draining is logged)."""
        if self.desired is None or desired.draining != self.desired.draining:
            log.info(
                "host %s: generation %d%s",
                self.facts.name,
                desired.generation,
                " (draining)" if desired.draining else "",
            )
        self.desired = desired


__all__ = ["HostAgent", "HostFacts", "Refusal"]
