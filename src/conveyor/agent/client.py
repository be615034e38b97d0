"""The agent's side of the agent protocol (protocol/agent.py): the calls an agent makes
(`Link`), over HTTP to the coordinator's replicas (`AgentClient`); the coordinator's
embedded agent makes the same calls in its own process (coordinator/embedded.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Protocol

import httpx

from conveyor.agent.artifacts import ArtifactCache
from conveyor.dial import Dialer, reply_as
from conveyor.protocol.agent import Desired, Join, Joined, Report


class Refusal(Exception):
    """The coordinator refused the call for a reason retrying will not change."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{detail} ({status} {error})")
        self.status = status
        self.error = error
        self.detail = detail


class StaleFence(Exception):
    """The host registered again since this agent joined (or was found lost)."""


class Link(Protocol):
    """What an agent asks of the coordinator. Raises StaleFence when the host joined
    again since, Refusal when the coordinator will not have it, OSError or httpx's
    errors when the coordinator cannot be reached."""

    async def join(self, body: Join) -> Joined: ...

    async def desired(
        self, host_id: uuid.UUID, fence: int, generation: int, wait: float
    ) -> Desired: ...

    async def report(self, host_id: uuid.UUID, body: Report) -> None: ...

    async def fetch(
        self,
        cache: ArtifactCache,
        host_id: uuid.UUID,
        fence: int,
        digest: str,
        in_use: frozenset[str],
    ) -> Path:
        """A file holding the artifact's bytes (verified against the digest)."""
        ...

    async def close(self) -> None: ...


class AgentClient:
    """Calls with the host token; fails over between the coordinator's replicas."""

    def __init__(self, server: str, token: str) -> None:
        self.dialer = Dialer(server, token)

    async def close(self) -> None:
        await self.dialer.close()

    async def join(self, body: Join) -> Joined:
        response = await self.dialer.send(
            "POST", "/api/v1/agent/join", json=body.model_dump(mode="json")
        )
        _check(response)
        return reply_as(Joined, response)

    async def desired(
        self, host_id: uuid.UUID, fence: int, generation: int, wait: float
    ) -> Desired:
        params = {"host": str(host_id), "fence": fence, "generation": generation, "wait": wait}
        response = await self.dialer.send("GET", "/api/v1/agent/desired", params=params)
        _check(response)
        return reply_as(Desired, response)

    async def report(self, host_id: uuid.UUID, body: Report) -> None:
        response = await self.dialer.send(
            "POST",
            "/api/v1/agent/report",
            params={"host": str(host_id)},
            json=body.model_dump(mode="json"),
        )
        _check(response)

    async def fetch(
        self,
        cache: ArtifactCache,
        host_id: uuid.UUID,
        fence: int,
        digest: str,
        in_use: frozenset[str],
    ) -> Path:
        """Into the host's cache, from the first replica (resumed where it stopped)."""
        http, url = self.dialer.http, self.dialer.urls[0]
        return await cache.fetch(http, url, host_id, fence, digest, in_use)


def _check(response: httpx.Response) -> None:
    """StaleFence on 409 stale_fence, Refusal on any other 4xx, httpx's error on 5xx."""
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
            error, detail = str(body.get("error", "")), str(body.get("detail", ""))
        except ValueError:
            error, detail = "", response.text[:500]
        if response.status_code == 409 and error == "stale_fence":
            raise StaleFence(detail)
        raise Refusal(response.status_code, error, detail)
    response.raise_for_status()
