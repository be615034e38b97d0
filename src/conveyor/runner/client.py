"""The runner's side of the coordinator protocol over HTTP: a client that fails over
between replicas, and registration."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from conveyor.artifacts.tarballs import MEDIA_TYPE
from conveyor.dial import Dialer, reply_as, servers
from conveyor.protocol.errors import StaleLease
from conveyor.protocol.runner import (
    MAX_DETAIL,
    Assignment,
    DeploymentProgress,
    FinishRequest,
    Heartbeat,
    HeartbeatReply,
    LogTail,
    RegisterReply,
    RegisterRequest,
)
from conveyor.runner.attempt import AttemptResult

log = logging.getLogger("conveyor.runner")


class DeployError(Exception):
    """The coordinator refused a `deploy:` job's deployment."""


class Client:
    """The runner's side of the protocol (runner token in every request). With several
    coordinator URLs, a request that cannot reach one replica is sent to the next."""

    def __init__(self, server: str, token: str) -> None:
        self.dialer = Dialer(server, token)

    @property
    def http(self) -> httpx.AsyncClient:
        return self.dialer.http

    @property
    def urls(self) -> list[str]:
        return self.dialer.urls

    async def close(self) -> None:
        await self.dialer.close()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.dialer.send(method, path, **kwargs)

    async def request(self, wait: float) -> Assignment | None:
        """The next job for this runner, held up to `wait` seconds; None when none came."""
        response = await self._send("POST", "/api/v1/runners/jobs/request", params={"wait": wait})
        if response.status_code == 204:
            return None
        response.raise_for_status()
        return reply_as(Assignment, response)

    async def heartbeat(self, job_id: str, fence: int) -> bool:
        """Renew the lease; True when the job was canceled."""
        response = await self._send(
            "POST",
            f"/api/v1/runners/jobs/{job_id}/heartbeat",
            json=Heartbeat(fence=fence).model_dump(mode="json"),
        )
        self._check(response)
        return reply_as(HeartbeatReply, response).canceled

    async def log(self, job_id: str, fence: int, offset: int, data: bytes) -> None:
        response = await self._send(
            "PUT",
            f"/api/v1/runners/jobs/{job_id}/log",
            params={"fence": fence, "offset": offset},
            content=data,
        )
        self._check(response)

    async def finish(
        self, job_id: str, fence: int, result: AttemptResult, tail: tuple[int, str] | None = None
    ) -> None:
        """Report the outcome, with the log's last chunk (offset, text) when given."""
        body = FinishRequest(
            fence=fence,
            status=result.status,
            exit_code=result.exit_code,
            failure_class=result.failure_class,
            detail=result.detail[:MAX_DETAIL],
            reports={
                **result.reports_dict(),
                "gates": [g.as_dict() for g in result.gates],
                "artifacts": [a.as_dict() for a in result.artifacts],
            },
            log=LogTail(offset=tail[0], text=tail[1]) if tail is not None else None,
        )
        response = await self._send(
            "POST", f"/api/v1/runners/jobs/{job_id}/finish", json=body.model_dump(mode="json")
        )
        self._check(response)

    async def cache_get(self, job_id: str, fence: int, key: str) -> bytes | None:
        response = await self._send(
            "GET", f"/api/v1/runners/jobs/{job_id}/cache/{key}", params={"fence": fence}
        )
        if response.status_code == 404:
            return None
        self._check(response)
        return response.content

    async def cache_put(self, job_id: str, fence: int, key: str, data: bytes) -> None:
        response = await self._send(
            "PUT",
            f"/api/v1/runners/jobs/{job_id}/cache/{key}",
            params={"fence": fence},
            content=data,
        )
        self._check(response)

    async def artifacts_put(self, job_id: str, fence: int, tarball: Path) -> str:
        """Upload a job's artifact tarball, streamed; returns its digest."""

        async def chunks() -> AsyncIterator[bytes]:
            with tarball.open("rb") as handle:
                while block := await asyncio.to_thread(handle.read, 1 << 20):
                    yield block

        response = await self._send(
            "PUT",
            f"/api/v1/runners/jobs/{job_id}/artifacts",
            params={"fence": fence},
            content=chunks(),
            headers={"Content-Type": MEDIA_TYPE},
        )
        self._check(response)
        return str(response.json()["digest"])

    async def artifacts_get(self, job_id: str, fence: int, job_name: str, dest: Path) -> bool:
        """Download what `job_name` published into `dest`, verifying its digest; False
        when it published nothing."""
        params: dict[str, str | int] = {"fence": fence, "job": job_name}
        url = self.urls[0] + f"/api/v1/runners/jobs/{job_id}/artifacts"
        async with self.http.stream("GET", url, params=params) as response:
            if response.status_code == 404:
                return False
            if not response.is_success:
                await response.aread()  # an error's body, for _check to quote
                self._check(response)
            expected = response.headers.get("x-conveyor-digest", "")
            hasher = hashlib.sha256()
            with dest.open("wb") as handle:
                async for block in response.aiter_bytes(1 << 20):
                    hasher.update(block)
                    await asyncio.to_thread(handle.write, block)
        if f"sha256:{hasher.hexdigest()}" != expected:
            raise OSError(f"artifacts of {job_name!r}: the download does not match {expected}")
        return True

    async def deploy_start(self, job_id: str, fence: int) -> DeploymentProgress:
        """Start (or find again) the deployment of a `deploy:` job; DeployError when the
        coordinator refuses it."""
        response = await self._send(
            "POST", f"/api/v1/runners/jobs/{job_id}/deploy", params={"fence": fence}
        )
        if response.status_code in (404, 409, 410, 422):
            raise DeployError(str(response.json().get("detail", response.text)))
        self._check(response)
        return reply_as(DeploymentProgress, response)

    async def deploy_status(
        self, job_id: str, fence: int, environment: str, number: int
    ) -> DeploymentProgress:
        response = await self._send(
            "GET",
            f"/api/v1/runners/jobs/{job_id}/deploy/{environment}/{number}",
            params={"fence": fence},
        )
        self._check(response)
        return reply_as(DeploymentProgress, response)

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code == 409:
            raise StaleLease(response.text)
        response.raise_for_status()


async def register(server: str, token: str, name: str, labels: tuple[str, ...]) -> str:
    """Exchange a registration token for a runner token."""
    async with httpx.AsyncClient(base_url=servers(server)[0], timeout=15.0) as http:
        body = RegisterRequest(token=token, name=name, labels=list(labels))
        response = await http.post("/api/v1/runners/register", json=body.model_dump(mode="json"))
        response.raise_for_status()
        return reply_as(RegisterReply, response).token
