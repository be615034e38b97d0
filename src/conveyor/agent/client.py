"""The agent's side of the agent protocol over HTTP (protocol/agent.py)."""

from __future__ import annotations

import uuid

import httpx

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
