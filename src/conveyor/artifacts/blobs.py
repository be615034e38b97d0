"""Blobs named by their sha256 (`sha256:<hex>`, docs/ids.md), behind a small interface:
files under the data directory here, S3-compatible object storage in artifacts.s3.

Writes stream: the digest and the size are computed while the bytes arrive, nothing is
held in memory, and a blob becomes visible only by an atomic rename once it is complete
and verified. Identical content is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from conveyor.domain.errors import NotFound, Refused, TooLarge

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


class BlobError(Refused):
    """A blob was refused: a bad digest or content (400), or of a kind that
    domain.errors names (too large, missing)."""


class BlobTooLarge(BlobError, TooLarge):
    pass


class DigestMismatch(BlobError):
    pass


class BlobMissing(BlobError, NotFound):
    pass


@dataclass(frozen=True, slots=True)
class Blob:
    digest: str
    size: int
    created: bool
    """False when the same content was already stored."""


def check_digest(digest: str) -> str:
    """`digest` itself when it reads `sha256:<64 lowercase hex>`, else BlobError."""
    if not DIGEST.match(digest):
        raise BlobError(f"a digest reads sha256:<64 hex digits>, not {digest[:80]!r}")
    return digest


class BlobStore(Protocol):
    """Where artifact bytes live. Every method may be called concurrently, from any
    replica that shares the store."""

    async def put(
        self, chunks: AsyncIterable[bytes], *, limit: int, expected: str | None = None
    ) -> Blob:
        """Store a stream. Raises BlobTooLarge past `limit` bytes and DigestMismatch when
        `expected` is given and differs; nothing is kept in either case. Idempotent."""
        ...

    def read(self, digest: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks; BlobMissing when it is not stored."""
        ...

    def local_path(self, digest: str) -> Path | None:
        """A file on this machine holding the blob, if there is one now (no I/O but a
        stat): for zero-copy serving."""
        ...

    async def local_file(self, digest: str) -> Path | None:
        """A file on this machine holding the blob, fetched from a remote store first if
        need be (for unpacking); None when the blob is not stored."""
        ...

    async def exists(self, digest: str) -> bool: ...

    async def touched_at(self, digest: str) -> datetime | None:
        """When the blob was last stored (uploaded again: then); None if it is not."""
        ...

    def presigned(self, digest: str) -> str | None:
        """A URL that serves the blob without the coordinator, if the store gives one."""
        ...

    async def delete(self, digest: str) -> bool:
        """Forget the blob; False when it was not stored. Idempotent."""
        ...


class FileBlobStore:
    """Blobs as files `<root>/sha256/<2 hex>/<62 hex>`; partial uploads in `<root>/tmp`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def _path(self, digest: str) -> Path:
        hexpart = check_digest(digest).removeprefix("sha256:")
        return self.root / "sha256" / hexpart[:2] / hexpart[2:]

    async def put(
        self, chunks: AsyncIterable[bytes], *, limit: int, expected: str | None = None
    ) -> Blob:
        if expected is not None:
            check_digest(expected)
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        partial = Path(name)
        try:
            digest, size = await self._write(fd, chunks, limit)
            if expected is not None and digest != expected:
                raise DigestMismatch(f"the content's digest is {digest}, not {expected}")
            final = self._path(digest)
            if final.exists():
                os.utime(final)  # uploaded again: retention's grace period starts over
                return Blob(digest, size, created=False)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(partial, 0o444)
            partial.replace(final)
            return Blob(digest, size, created=True)
        finally:
            partial.unlink(missing_ok=True)

    async def _write(self, fd: int, chunks: AsyncIterable[bytes], limit: int) -> tuple[str, int]:
        """Hash as the bytes arrive; write them in blocks of CHUNK from a worker thread (a
        request body arrives in pieces of a few KiB)."""
        hasher = hashlib.sha256()
        size = 0
        pending = bytearray()
        with os.fdopen(fd, "wb") as handle:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise BlobTooLarge(f"an artifact is at most {limit} bytes")
                hasher.update(chunk)
                pending += chunk
                if len(pending) >= CHUNK:
                    block, pending = bytes(pending), bytearray()
                    await asyncio.to_thread(handle.write, block)
            if pending:
                await asyncio.to_thread(handle.write, bytes(pending))
            await asyncio.to_thread(handle.flush)
            await asyncio.to_thread(os.fsync, handle.fileno())
        return f"sha256:{hasher.hexdigest()}", size

    async def read(self, digest: str) -> AsyncIterator[bytes]:
        path = self._path(digest)
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise BlobMissing(f"no blob {digest}") from exc
        with handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk

    def local_path(self, digest: str) -> Path | None:
        path = self._path(digest)
        return path if path.is_file() else None

    async def local_file(self, digest: str) -> Path | None:
        return self.local_path(digest)

    async def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    async def touched_at(self, digest: str) -> datetime | None:
        try:
            return datetime.fromtimestamp(self._path(digest).stat().st_mtime, UTC)
        except FileNotFoundError:
            return None

    def presigned(self, digest: str) -> str | None:
        return None

    async def delete(self, digest: str) -> bool:
        try:
            self._path(digest).unlink()
        except FileNotFoundError:
            return False
        return True


class MemoryBlobStore:
    """The fake for unit tests: the same contract, in a dict."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put(
        self, chunks: AsyncIterable[bytes], *, limit: int, expected: str | None = None
    ) -> Blob:
        data = bytearray()
        async for chunk in chunks:
            data += chunk
            if len(data) > limit:
                raise BlobTooLarge(f"an artifact is at most {limit} bytes")
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if expected is not None and check_digest(expected) != digest:
            raise DigestMismatch(f"the content's digest is {digest}, not {expected}")
        created = digest not in self.blobs
        self.blobs.setdefault(digest, bytes(data))
        return Blob(digest, len(data), created)

    async def read(self, digest: str) -> AsyncIterator[bytes]:
        if check_digest(digest) not in self.blobs:
            raise BlobMissing(f"no blob {digest}")
        yield self.blobs[digest]

    def local_path(self, digest: str) -> Path | None:
        return None

    async def local_file(self, digest: str) -> Path | None:
        return None

    async def exists(self, digest: str) -> bool:
        return digest in self.blobs

    async def touched_at(self, digest: str) -> datetime | None:
        return datetime.now(UTC) if digest in self.blobs else None

    def presigned(self, digest: str) -> str | None:
        return None

    async def delete(self, digest: str) -> bool:
        return self.blobs.pop(digest, None) is not None
