"""The embedded agent's in-process link answers as the HTTP one would: a stale fence is
StaleFence, a refusal keeps its status and code, an unreachable database is a connection
error the agent retries, and an artifact gone from the store is 410."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy.exc import OperationalError

from conveyor.agent.artifacts import ArtifactCache
from conveyor.agent.client import Refusal, StaleFence
from conveyor.artifacts.blobs import MemoryBlobStore
from conveyor.coordinator.embedded import InProcessLink
from conveyor.deploy.fleet import Fenced, Fleet
from conveyor.domain.errors import NotFound, Unauthenticated
from conveyor.protocol.agent import Report

HOST = uuid.uuid4()


class Refusing:
    """A fleet whose every call raises `error` (or answers, with none)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.calls: list[str] = []

    async def _call(self, name: str) -> Any:
        self.calls.append(name)
        if self.error is not None:
            raise self.error
        return name

    async def desired(self, *args: Any) -> Any:
        return await self._call("desired")

    async def report(self, *args: Any) -> Any:
        return await self._call("report")

    async def artifact(self, *args: Any) -> Any:
        return await self._call("artifact")


def link(error: Exception | None, blobs: Any = None) -> InProcessLink:
    return InProcessLink(cast(Fleet, Refusing(error)), "digest", blobs or MemoryBlobStore())


async def test_refusals_are_heard_as_over_http():
    with pytest.raises(StaleFence):
        await link(Fenced("joined again", code="stale_fence")).desired(HOST, 1, 0, 0)
    with pytest.raises(Refusal) as revoked:
        await link(Unauthenticated("revoked")).report(HOST, Report(fence=1, generation=0))
    assert (revoked.value.status, revoked.value.error) == (401, "unauthorized")
    down = OperationalError("SELECT 1", {}, Exception("database is locked"))
    with pytest.raises(ConnectionError, match="database is unavailable"):
        await link(down).desired(HOST, 1, 0, 0)


async def test_an_artifact_is_read_from_the_store_or_is_gone(tmp_path: Path):
    cache = ArtifactCache(tmp_path, 1 << 20)
    with pytest.raises(Refusal) as gone:
        await link(None).fetch(cache, HOST, 1, "sha256:" + "0" * 64, frozenset())
    assert gone.value.status == 410
    with pytest.raises(Refusal) as other_team:
        await link(NotFound("not this host's")).fetch(cache, HOST, 1, "sha256:1", frozenset())
    assert other_team.value.status == 404
