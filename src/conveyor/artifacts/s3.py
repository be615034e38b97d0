"""Blobs in S3-compatible object storage (decision 0029): the store that coordinator
replicas on different machines share (`CONVEYOR_ARTIFACTS_URL=s3://bucket/prefix`).

An object's key is `<prefix>sha256/<64 hex>`. Each replica keeps a local copy of the
blobs it wrote or read in a `FileBlobStore` of its own (its cache): an upload is hashed
and verified there first (the digest is known only at the end), then sent to the bucket
(boto3's managed transfer: multipart past 8 MiB); a blob another replica wrote is fetched
into the cache, and verified again, when this one needs a file of it (to unpack it, to
serve it). The bucket, the endpoint and the credentials are boto3's own settings:
`AWS_ENDPOINT_URL` for a store that is not AWS, `AWS_ACCESS_KEY_ID` and
`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`. With `?presign=SECONDS` in the URL, agents and
runners are sent to a presigned URL of the object instead of through the coordinator.

boto3 is synchronous: every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from conveyor.artifacts.blobs import CHUNK, Blob, BlobMissing, FileBlobStore, check_digest


class S3Url:
    """`s3://bucket[/prefix][?presign=SECONDS]`, checked."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"an artifacts URL reads s3://bucket[/prefix], not {url!r}")
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        query = parse_qs(parts.query)
        unknown = set(query) - {"presign"}
        if unknown:
            raise ValueError(f"{url}: unknown option {sorted(unknown)[0]!r} (known: presign)")
        presign = query.get("presign", ["0"])[-1]
        if not presign.isdigit() or int(presign) > 7 * 24 * 3600:
            raise ValueError(f"{url}: presign is a number of seconds up to a week")
        self.presign_s = int(presign)


def _missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


CACHE_BYTES = 10 * 2**30
"""The most of the bucket's blobs a replica keeps on its own disk, by default."""


class S3BlobStore:
    def __init__(
        self, url: str, cache: Path, client: Any = None, cache_bytes: int = CACHE_BYTES
    ) -> None:
        self.where = S3Url(url)
        self.local = FileBlobStore(cache)
        self.cache_bytes = cache_bytes
        if client is None:
            import boto3

            client = boto3.session.Session().client("s3")
        self.client = client

    def key(self, digest: str) -> str:
        return f"{self.where.prefix}sha256/{check_digest(digest).removeprefix('sha256:')}"

    async def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        return await asyncio.to_thread(method, **kwargs)

    async def _head(self, digest: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._call(
                self.client.head_object, Bucket=self.where.bucket, Key=self.key(digest)
            )
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        return found

    async def put(
        self, chunks: AsyncIterable[bytes], *, limit: int, expected: str | None = None
    ) -> Blob:
        blob = await self.local.put(chunks, limit=limit, expected=expected)
        path = self.local.local_path(blob.digest)
        assert path is not None
        await asyncio.to_thread(self._trim, path)
        key = self.key(blob.digest)
        if await self._head(blob.digest) is not None:
            # Uploaded again: its LastModified starts retention's grace period over.
            await self._call(
                self.client.copy_object,
                Bucket=self.where.bucket,
                Key=key,
                CopySource={"Bucket": self.where.bucket, "Key": key},
                MetadataDirective="REPLACE",
            )
            return Blob(blob.digest, blob.size, created=False)
        await self._call(
            self.client.upload_file, Filename=str(path), Bucket=self.where.bucket, Key=key
        )
        return Blob(blob.digest, blob.size, created=True)

    async def read(self, digest: str) -> AsyncIterator[bytes]:
        if self._cached(digest) is not None:
            async for chunk in self.local.read(digest):
                yield chunk
            return
        body = await self._body(digest)
        try:
            while chunk := await asyncio.to_thread(body.read, CHUNK):
                yield chunk
        finally:
            body.close()

    async def _body(self, digest: str) -> Any:
        try:
            found = await self._call(
                self.client.get_object, Bucket=self.where.bucket, Key=self.key(digest)
            )
        except Exception as exc:
            if _missing(exc):
                raise BlobMissing(f"no blob {digest}") from exc
            raise
        return found["Body"]

    def local_path(self, digest: str) -> Path | None:
        return self.local.local_path(digest)

    async def local_file(self, digest: str) -> Path | None:
        """A file of the blob on this machine: the cached copy, or the object fetched
        into the cache (its digest checked on the way). None when it is not stored."""
        if (path := self._cached(digest)) is not None:
            return path
        try:
            body = await self._body(digest)
        except BlobMissing:
            return None

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await asyncio.to_thread(body.read, CHUNK):
                    yield chunk
            finally:
                body.close()

        await self.local.put(chunks(), limit=1 << 62, expected=digest)
        path = self.local.local_path(digest)
        if path is not None:
            await asyncio.to_thread(self._trim, path)
        return path

    def _cached(self, digest: str) -> Path | None:
        """The cached copy, marked as used now (the cache evicts the least recently used
        first)."""
        path = self.local.local_path(digest)
        if path is not None:
            with contextlib.suppress(OSError):
                os.utime(path)
        return path

    def _trim(self, keep: Path) -> None:
        """Evict the least recently used copies until the cache is within its bound
        (never `keep`, the one just used)."""
        found = []
        for path in (self.local.root / "sha256").glob("*/*"):
            with contextlib.suppress(OSError):
                stat = path.stat()
                found.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in found)
        for _, size, path in sorted(found):
            if total <= self.cache_bytes:
                return
            if path == keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size

    async def exists(self, digest: str) -> bool:
        return await self._head(digest) is not None

    async def touched_at(self, digest: str) -> datetime | None:
        found = await self._head(digest)
        if found is None:
            return None
        when: datetime = found["LastModified"]
        return when if when.tzinfo else when.replace(tzinfo=UTC)

    async def delete(self, digest: str) -> bool:
        present = await self._head(digest) is not None
        if present:
            await self._call(
                self.client.delete_object, Bucket=self.where.bucket, Key=self.key(digest)
            )
        await self.local.delete(digest)
        return present

    def presigned(self, digest: str) -> str | None:
        """A URL any HTTP client may GET the object from for a while (`?presign=`)."""
        if not self.where.presign_s:
            return None
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.where.bucket, "Key": self.key(digest)},
            ExpiresIn=self.where.presign_s,
        )
        return url
