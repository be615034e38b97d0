"""The coordinator's own machine as a host of the fleet: an agent in the coordinator's
process (the same `agent.host.HostAgent` as on any host) that joins the built-in pool
`local` (domain.hosts.LOCAL_POOL: it serves every team) with the label
`conveyor.local=true` and the address 127.0.0.1. Its calls go to the fleet's use cases
directly rather than over HTTP (`InProcessLink`), with a host token made at each start,
and it reads artifacts from the store's own files instead of copying them."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from conveyor.agent.artifacts import ArtifactCache
from conveyor.agent.client import Refusal, StaleFence
from conveyor.agent.host import HostAgent, HostFacts
from conveyor.api.auth import HOST_PREFIX, new_token, token_hash
from conveyor.api.errors import answer_of
from conveyor.artifacts.blobs import BlobStore
from conveyor.deploy.fleet import Fenced, Fleet
from conveyor.domain.errors import Refused
from conveyor.domain.hosts import LOCAL_LABEL
from conveyor.filelock import exclusive_when_free
from conveyor.protocol.agent import Desired, Join, Joined, Report
from conveyor.storage.database import UNAVAILABLE

LOCAL_ADDRESS = "127.0.0.1"


class InProcessLink:
    """An agent's calls (agent.client.Link) made to this process's fleet use cases."""

    def __init__(self, fleet: Fleet, digest: str, blobs: BlobStore) -> None:
        self.fleet = fleet
        self.digest = digest
        self.blobs = blobs

    async def join(self, body: Join) -> Joined:
        with _as_over_http():
            return await self.fleet.join(self.digest, body)

    async def desired(
        self, host_id: uuid.UUID, fence: int, generation: int, wait: float
    ) -> Desired:
        with _as_over_http():
            return await self.fleet.desired(self.digest, host_id, fence, generation, wait)

    async def report(self, host_id: uuid.UUID, body: Report) -> None:
        with _as_over_http():
            await self.fleet.report(self.digest, host_id, body)

    async def fetch(
        self,
        cache: ArtifactCache,
        host_id: uuid.UUID,
        fence: int,
        digest: str,
        in_use: frozenset[str],
    ) -> Path:
        """The store's own file (it was verified when it was stored)."""
        with _as_over_http():
            await self.fleet.artifact(self.digest, host_id, fence, digest)
        found = await self.blobs.local_file(digest)
        if found is None:
            raise Refusal(410, "gone", f"artifact {digest} is no longer in the store")
        return found

    async def close(self) -> None:
        return None


@contextlib.contextmanager
def _as_over_http() -> Iterator[None]:
    """The use case's refusals as the agent hears them over HTTP: a stale fence, another
    refusal with its status, and a database it cannot reach as a coordinator it cannot
    reach (the agent retries with its back-off, keeping its join)."""
    try:
        yield
    except Fenced as exc:
        raise StaleFence(str(exc)) from exc
    except Refused as exc:
        status, error = answer_of(exc)
        raise Refusal(status, error, str(exc)) from exc
    except UNAVAILABLE as exc:
        raise ConnectionError(f"the database is unavailable: {exc}") from exc


class EmbeddedAgent:
    """This machine's agent, run by one of the coordinator processes that share a data
    directory (`serve --workers N`, replicas on one machine): the one that holds
    `<data-dir>/agent.lock`; the others wait for it, so that when its process ends
    another takes the host over (joining again, which fences the old agent). Each
    start makes a new token of pool `local` (the previous one of the same name is
    revoked). Its instances live under `<data-dir>/agent`, as on any host."""

    def __init__(
        self, fleet: Fleet, blobs: BlobStore, data_dir: Path, name: str | None = None
    ) -> None:
        self.fleet = fleet
        self.blobs = blobs
        self.data_dir = data_dir
        self.name = name or socket.gethostname()
        self.agent: HostAgent | None = None

    async def serve(self) -> None:
        async with exclusive_when_free(self.data_dir / "agent.lock"):
            token = token_hash(new_token(HOST_PREFIX))
            await self.fleet.local_token(f"embedded agent of {self.name}", token)
            facts = HostFacts(name=self.name, address=LOCAL_ADDRESS, labels={LOCAL_LABEL: "true"})
            link = InProcessLink(self.fleet, token, self.blobs)
            self.agent = HostAgent(facts, link, self.data_dir / "agent")
            try:
                await self.agent.serve()
            finally:
                await self.agent.close()

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()
