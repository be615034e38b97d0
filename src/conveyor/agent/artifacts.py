"""Artifacts on a host: fetched from the coordinator by digest, resumed where an
interrupted download stopped (an HTTP range request), verified against the digest
before use, and kept in a cache with a size bound (least recently used first out)."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

import httpx

log = logging.getLogger("conveyor.agent")
CHUNK = 1 << 20


class DigestMismatch(Exception):
    """The bytes fetched do not have the digest asked for: they are thrown away."""


class ArtifactCache:
    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root
        self.limit_bytes = limit_bytes

    def path(self, digest: str) -> Path:
        return self.root / digest.removeprefix("sha256:")

    def cached(self, digest: str) -> Path | None:
        found = self.path(digest)
        if found.is_file():
            os.utime(found)  # recently used
            return found
        return None

    async def fetch(
        self,
        http: httpx.AsyncClient,
        url: str,
        host_id: uuid.UUID,
        fence: int,
        digest: str,
        in_use: frozenset[str] = frozenset(),
    ) -> Path:
        """The artifact's file, fetched unless it is cached. Raises DigestMismatch, or
        httpx's errors (a partial download is kept, and the next fetch resumes it)."""
        if (found := self.cached(digest)) is not None:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(digest)
        partial = final.with_name(final.name + ".partial")
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        params: dict[str, str | int] = {"host": str(host_id), "fence": fence}
        target = f"{url}/api/v1/agent/artifacts/{digest}"
        async with http.stream("GET", target, params=params, headers=headers) as response:
            if response.status_code == 416:  # asked past the end: the partial is whole
                hashed = _sha256(partial)
            else:
                response.raise_for_status()
                resumed = response.status_code == 206
                # Hashed as the bytes arrive (a resumed download: its partial first), so
                # the file is not read again once it is whole.
                hashed = _sha256(partial) if resumed else hashlib.sha256()
                if not resumed:
                    offset = 0
                with partial.open("ab" if resumed else "wb") as out:
                    async for chunk in response.aiter_bytes():  # as they come: a cut keeps them
                        out.write(chunk)
                        hashed.update(chunk)
        if "sha256:" + hashed.hexdigest() != digest:
            partial.unlink(missing_ok=True)
            raise DigestMismatch(f"artifact {digest}: the bytes fetched have another digest")
        partial.rename(final)
        if offset:
            log.info("artifact %s: resumed at byte %d", digest, offset)
        self.evict(keep=in_use | {digest})
        return final

    def evict(self, keep: frozenset[str] = frozenset()) -> list[str]:
        """Remove the least recently used artifacts until the cache is within its bound,
        never one in `keep`. Returns the digests removed."""
        files = [p for p in self.root.glob("*") if p.is_file() and not p.name.endswith(".partial")]
        total = sum(p.stat().st_size for p in files)
        removed: list[str] = []
        for path in sorted(files, key=lambda p: p.stat().st_mtime):
            if total <= self.limit_bytes:
                break
            digest = "sha256:" + path.name
            if digest in keep:
                continue
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append(digest)
        return removed


def _sha256(path: Path) -> hashlib._Hash:
    """The running hash of what `path` holds so far."""
    hashed = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            hashed.update(chunk)
    return hashed
