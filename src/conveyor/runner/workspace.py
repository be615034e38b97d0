"""Job workspaces, artifacts and caches on the local disk.

A workspace is a fresh copy of the service directory for each attempt. In a git work tree
only the files git would check out or has not been told to ignore are copied, so a local
run sees what a runner's checkout will see; elsewhere everything but Conveyor's own data
directory is copied.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wcmatch import glob

_GLOB_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.DOTGLOB | glob.NODIR


def slug(name: str) -> str:
    """A file-system-safe, unique name for a job (matrix names hold spaces and brackets)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "job"
    return f"{safe[:60]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _git_files(source: Path) -> list[str] | None:
    try:
        result = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            cwd=source,
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return [p for p in result.stdout.decode().split("\0") if p]


def source_files(source: Path, exclude: Sequence[Path] = ()) -> list[str]:
    """Relative paths of the files a workspace copies from `source`."""
    excluded = [e.resolve() for e in exclude]
    files = _git_files(source)
    if files is None:
        files = []
        for root, dirs, names in os.walk(source):
            here = Path(root)
            dirs[:] = [d for d in dirs if (here / d).resolve() not in excluded and d != ".git"]
            files += [str((here / n).relative_to(source)) for n in names]
    out = []
    for rel in files:
        path = (source / rel).resolve()
        if any(path.is_relative_to(e) for e in excluded):
            continue
        if (source / rel).is_file() or (source / rel).is_symlink():
            out.append(rel)
    return sorted(out)


def populate(dest: Path, source: Path, files: Iterable[str]) -> None:
    """Copy `files` (relative to `source`) into a new directory `dest`."""
    dest.mkdir(parents=True, exist_ok=False)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target, follow_symlinks=False)


def match_files(root: Path, patterns: Sequence[str]) -> list[str]:
    """Files under `root` matched by any of the glob patterns, relative and sorted.
    A pattern that names a directory takes everything below it, as in GitLab."""
    expanded = [q for p in patterns for q in (p, p.rstrip("/") + "/**")]
    found = glob.glob(expanded, root_dir=str(root), flags=_GLOB_FLAGS)
    return sorted({str(Path(p)) for p in found})


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True, slots=True)
class StoredFile:
    path: str
    size: int
    digest: str

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "digest": self.digest}


def save_artifacts(workspace: Path, patterns: Sequence[str], dest: Path) -> list[StoredFile]:
    """Copy the files matching `patterns` out of the workspace, with their digests."""
    stored: list[StoredFile] = []
    for rel in match_files(workspace, patterns):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workspace / rel, target)
        stored.append(StoredFile(rel, target.stat().st_size, file_digest(target)))
    return stored


def restore_artifacts(source: Path, workspace: Path) -> int:
    """Copy a finished job's artifacts into a workspace; returns the number of files."""
    if not source.is_dir():
        return 0
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = workspace / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            count += 1
    return count


def cache_key(job_base: str, workspace: Path, files: Sequence[str], prefix: str | None) -> str:
    """sha256 over the job name and the named files' paths and contents."""
    digest = hashlib.sha256(job_base.encode() + b"\0")
    for rel in match_files(workspace, files):
        digest.update(rel.encode() + b"\0")
        digest.update(file_digest(workspace / rel).encode() + b"\0")
    return f"{prefix + '-' if prefix else ''}{digest.hexdigest()}"


def pack(workspace: Path, paths: Sequence[str]) -> tuple[bytes, int]:
    """A tar of the files matching `paths`, and how many files it holds."""
    files = match_files(workspace, paths)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel in files:
            tar.add(workspace / rel, arcname=rel)
    return buffer.getvalue(), len(files)


def unpack(data: bytes, workspace: Path) -> None:
    """Unpack a cache tar into a workspace (tarfile's `data` filter: no absolute paths,
    no links out of the workspace)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(workspace, filter="data")


class JobCache(Protocol):
    """Where a job's cache lives. `restore` is called before the script, `save` after
    success; both may be called from many jobs at once."""

    async def restore(self, key: str, workspace: Path) -> bool:
        """Unpack the cache for `key` into the workspace; False on a miss."""
        ...

    async def save(self, key: str, workspace: Path, paths: Sequence[str]) -> int:
        """Store the files matching `paths` under `key`; returns how many files."""
        ...


class LocalCache:
    """Caches as tar files in a directory, one per key (`conveyor run`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _archive(self, key: str) -> Path:
        return self.root / f"{key}.tar"

    async def restore(self, key: str, workspace: Path) -> bool:
        archive = self._archive(key)
        if not archive.is_file():
            return False
        unpack(archive.read_bytes(), workspace)
        return True

    async def save(self, key: str, workspace: Path, paths: Sequence[str]) -> int:
        data, count = pack(workspace, paths)
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self._archive(key).with_suffix(".tar.partial")
        partial.write_bytes(data)
        partial.replace(self._archive(key))
        return count


class JobArtifacts(Protocol):
    """Where jobs publish their `artifacts: paths` and fetch those of the jobs they need.
    `publish` is called after a job succeeds, `fetch` before a dependant's script."""

    async def fetch(self, job_name: str, workspace: Path) -> int:
        """Unpack what job `job_name` of this run published; returns how many files."""
        ...

    async def publish(
        self, job_name: str, workspace: Path, patterns: Sequence[str]
    ) -> list[StoredFile]:
        """Keep the files matching `patterns`; returns them with their digests."""
        ...


class LocalArtifacts:
    """Artifacts as plain directories of one run on this machine (`conveyor run`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, job_name: str) -> Path:
        return self.root / slug(job_name)

    async def fetch(self, job_name: str, workspace: Path) -> int:
        return restore_artifacts(self._dir(job_name), workspace)

    async def publish(
        self, job_name: str, workspace: Path, patterns: Sequence[str]
    ) -> list[StoredFile]:
        dest = self._dir(job_name)
        shutil.rmtree(dest, ignore_errors=True)
        return save_artifacts(workspace, patterns, dest)
