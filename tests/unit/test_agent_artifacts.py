"""The agent's artifact cache against a transport in the test: a download that breaks off
resumes with a range request, the bytes are checked against the digest, and the cache
keeps within its bound, least recently used out first."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import httpx
import pytest

from conveyor.agent.artifacts import ArtifactCache, DigestMismatch

HOST = uuid.uuid4()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Server:
    """Serves blobs by digest, answering ranges; can cut a response short once."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.ranges: list[str | None] = []
        self.cut_after: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        digest = request.url.path.rsplit("/", 1)[1]
        assert request.url.params["host"] == str(HOST) and request.url.params["fence"] == "3"
        data = self.blobs[digest]
        wanted = request.headers.get("range")
        self.ranges.append(wanted)
        if wanted:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                return httpx.Response(416)
            return httpx.Response(206, content=data[start:])
        if self.cut_after is not None:
            cut, self.cut_after = self.cut_after, None

            async def broken():  # type: ignore[no-untyped-def]
                yield data[:cut]
                raise httpx.ReadError("connection reset")

            return httpx.Response(200, content=broken())
        return httpx.Response(200, content=data)


class Streaming(httpx.AsyncBaseTransport):
    """Like httpx.MockTransport, but the body streams as the server yields it (the mock
    reads it whole before answering, so a cut would lose every byte)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.server(request)


def client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Streaming(server))


async def test_an_interrupted_download_resumes_where_it_stopped(tmp_path: Path):
    data = os.urandom(300_000)
    digest = digest_of(data)
    server = Server({digest: data})
    server.cut_after = 100_000
    cache = ArtifactCache(tmp_path, limit_bytes=10**9)
    async with client(server) as http:
        with pytest.raises(httpx.ReadError):
            await cache.fetch(http, "http://c", HOST, 3, digest)
        assert (tmp_path / (digest[7:] + ".partial")).stat().st_size == 100_000
        path = await cache.fetch(http, "http://c", HOST, 3, digest)
        assert path.read_bytes() == data
        assert server.ranges == [None, "bytes=100000-"]
        assert await cache.fetch(http, "http://c", HOST, 3, digest) == path  # cached
        assert len(server.ranges) == 2


async def test_bytes_of_another_digest_are_thrown_away(tmp_path: Path):
    claimed = digest_of(b"what was asked for")
    server = Server({claimed: b"something else entirely"})
    cache = ArtifactCache(tmp_path, limit_bytes=10**9)
    async with client(server) as http:
        with pytest.raises(DigestMismatch, match="another digest"):
            await cache.fetch(http, "http://c", HOST, 3, claimed)
    assert list(tmp_path.iterdir()) == []


async def test_the_cache_keeps_its_bound_least_recently_used_out_first(tmp_path: Path):
    blobs = {digest_of(bytes([n]) * 1000): bytes([n]) * 1000 for n in range(4)}
    first, second, third, fourth = blobs
    cache = ArtifactCache(tmp_path, limit_bytes=2500)
    async with client(Server(blobs)) as http:
        for n, digest in enumerate((first, second)):
            path = await cache.fetch(http, "http://c", HOST, 3, digest)
            os.utime(path, (1000 + n, 1000 + n))
        assert cache.cached(first) is not None  # used again: now the most recent
        os.utime(cache.path(first), (2000, 2000))
        await cache.fetch(http, "http://c", HOST, 3, third)
        assert cache.cached(second) is None and cache.cached(first) is not None
        # One in use is kept even when it is the least recently used.
        os.utime(cache.path(first), (10, 10))
        await cache.fetch(http, "http://c", HOST, 3, fourth, in_use=frozenset({first}))
        assert cache.cached(first) is not None and cache.cached(third) is None
