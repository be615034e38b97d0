"""The blob store: streamed, verified, deduplicated, and the same contract in its fake."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.artifacts.blobs import (
    BlobError,
    BlobMissing,
    BlobStore,
    BlobTooLarge,
    DigestMismatch,
    FileBlobStore,
    MemoryBlobStore,
)

pytestmark = pytest.mark.asyncio


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return FileBlobStore(tmp_path / "blobs") if request.param == "file" else MemoryBlobStore()


async def read_all(store: BlobStore, digest: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(digest)])


async def test_a_blob_is_named_by_its_sha256_and_stored_once(store: BlobStore):
    first = await store.put(stream(b"hello ", b"world"), limit=100)
    again = await store.put(stream(b"hello world"), limit=100)
    assert first.digest == digest_of(b"hello world") and first.size == 11 and first.created
    assert again.digest == first.digest and not again.created
    assert await read_all(store, first.digest) == b"hello world"
    assert await store.exists(first.digest)


async def test_a_wrong_expected_digest_or_an_oversized_body_keeps_nothing(
    store: BlobStore, tmp_path: Path
):
    with pytest.raises(DigestMismatch, match="not sha256:0000"):
        await store.put(stream(b"data"), limit=100, expected="sha256:" + "0" * 64)
    with pytest.raises(BlobTooLarge, match="at most 5 bytes"):
        await store.put(stream(b"abc", b"def"), limit=5)
    assert not await store.exists(digest_of(b"data"))
    assert not await store.exists(digest_of(b"abcdef"))
    if isinstance(store, FileBlobStore):
        assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


async def test_digests_are_checked_for_their_form(store: BlobStore):
    with pytest.raises(BlobError, match="sha256:<64 hex digits>"):
        await store.put(stream(b"x"), limit=10, expected="md5:abc")
    with pytest.raises(BlobError):
        await read_all(store, "../../etc/passwd")
    with pytest.raises(BlobMissing):
        await read_all(store, digest_of(b"never stored"))


async def test_delete_is_idempotent(store: BlobStore):
    blob = await store.put(stream(b"bytes"), limit=10)
    assert await store.delete(blob.digest)
    assert not await store.delete(blob.digest)
    assert not await store.exists(blob.digest)


async def test_files_are_read_only_and_memory_stays_flat_for_a_large_upload(tmp_path: Path):
    store = FileBlobStore(tmp_path)
    block = bytes(range(256)) * 4096  # 1 MiB
    total = 64

    async def big() -> AsyncIterator[bytes]:
        for _ in range(total):
            yield block

    tracemalloc.start()
    blob = await store.put(big(), limit=total * len(block))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert blob.size == total * len(block)
    assert peak < 8 * len(block), f"peak {peak} bytes for a {blob.size}-byte upload"
    path = store.local_path(blob.digest)
    assert path is not None and path.stat().st_mode & 0o222 == 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() == blob.digest.removeprefix("sha256:")
