"""The blob store: streamed, verified, deduplicated, and the same contract in its fake
and in S3-compatible object storage (a real SeaweedFS), where a second store with a cache
of its own stands for another replica."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
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
from conveyor.artifacts.s3 import S3BlobStore, S3Url
from tests import seaweed

pytestmark = pytest.mark.asyncio


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def s3_store(server: tuple[str, str], where: str, cache: Path, tail: str = "") -> S3BlobStore:
    endpoint, bucket = server
    return S3BlobStore(f"s3://{bucket}/{where}{tail}", cache, client=seaweed.client(endpoint))


@pytest.fixture(params=["file", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "s3":
        return s3_store(request.getfixturevalue("s3_server"), seaweed.prefix(), tmp_path / "c")
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


async def test_replicas_share_blobs_through_object_storage(
    s3_server: tuple[str, str], tmp_path: Path
):
    endpoint, bucket = s3_server
    where = seaweed.prefix()
    here = s3_store(s3_server, where, tmp_path / "a", "?presign=60")
    there = s3_store(s3_server, where, tmp_path / "b", "?presign=60")
    data = bytes(range(256)) * 40_000  # 10 MiB: a multipart upload
    blob = await here.put(stream(data[:3_000_000], data[3_000_000:]), limit=len(data))
    assert blob.created and blob.size == len(data)
    assert here.local_path(blob.digest) is not None  # the writer keeps its copy
    # Another replica finds it in the bucket, and reads it without a file of its own...
    assert there.local_path(blob.digest) is None and await there.exists(blob.digest)
    assert await read_all(there, blob.digest) == data
    # ... then fetches a file of it into its cache, its digest checked on the way.
    fetched = await there.local_file(blob.digest)
    assert fetched is not None and fetched.read_bytes() == data
    assert fetched.is_relative_to(tmp_path / "b")
    # Uploaded again: not stored twice, and retention's grace period starts over.
    before = await there.touched_at(blob.digest)
    assert before is not None
    again = await there.put(stream(data), limit=len(data))
    assert not again.created
    after = await there.touched_at(blob.digest)
    assert after is not None and after >= before
    # A presigned URL serves it (and ranges of it) without the coordinator.
    url = here.presigned(blob.digest)
    assert url is not None and url.startswith(f"{endpoint}/{bucket}/{where}/sha256/")
    ranged = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == data[100:200]
    assert s3_store(s3_server, where, tmp_path / "c").presigned(blob.digest) is None
    assert await here.delete(blob.digest) and not await there.exists(blob.digest)


async def test_bytes_changed_in_the_bucket_are_refused_by_a_replica(
    s3_server: tuple[str, str], tmp_path: Path
):
    endpoint, bucket = s3_server
    where = seaweed.prefix()
    writer = s3_store(s3_server, where, tmp_path / "a")
    blob = await writer.put(stream(b"the real bytes"), limit=100)
    key = writer.key(blob.digest)
    seaweed.client(endpoint).put_object(Bucket=bucket, Key=key, Body=b"evil")
    reader = s3_store(s3_server, where, tmp_path / "b")
    with pytest.raises(DigestMismatch):
        await reader.local_file(blob.digest)
    assert reader.local_path(blob.digest) is None


async def test_a_replicas_cache_of_the_bucket_keeps_within_its_bound(
    s3_server: tuple[str, str], tmp_path: Path
):
    endpoint, bucket = s3_server
    cached = S3BlobStore(
        f"s3://{bucket}/{seaweed.prefix()}",
        tmp_path / "c",
        client=seaweed.client(endpoint),
        cache_bytes=2500,
    )
    blobs = [await cached.put(stream(bytes([n]) * 1000), limit=2000) for n in range(3)]
    # The first is the least recently used: out of the cache, still in the bucket.
    assert [cached.local_path(b.digest) is not None for b in blobs] == [False, True, True]
    assert await read_all(cached, blobs[0].digest) == bytes([0]) * 1000
    path = await cached.local_file(blobs[0].digest)  # fetched back: now the second goes
    assert path is not None and path.read_bytes() == bytes([0]) * 1000
    assert [cached.local_path(b.digest) is not None for b in blobs] == [True, False, True]


async def test_an_artifacts_url_says_what_is_wrong():
    assert (S3Url("s3://bucket").bucket, S3Url("s3://bucket").prefix) == ("bucket", "")
    found = S3Url("s3://bucket/a/b/?presign=300")
    assert (found.prefix, found.presign_s) == ("a/b/", 300)
    for bad, why in (
        ("https://bucket", "reads s3://bucket"),
        ("s3:///prefix", "reads s3://bucket"),
        ("s3://b?presign=soon", "presign is a number of seconds"),
        ("s3://b?region=x", "unknown option 'region'"),
    ):
        with pytest.raises(ValueError, match=why):
            S3Url(bad)
