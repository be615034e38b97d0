"""Reproducible tarballs: the same files give the same bytes, hence the same digest, so a
service built twice from one commit is one artifact. Entries are sorted, and times,
owners and umask noise are cleared; only the executable bit of a mode is kept."""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

MEDIA_TYPE = "application/x-tar"


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isdir():
        info.mode = 0o755
    else:
        info.mode = 0o755 if info.mode & 0o100 else 0o644
    return info


def pack(root: Path, files: Iterable[str], dest: Path) -> int:
    """Write a tarball of `files` (paths relative to `root`) to `dest`; returns how many
    files it holds. Directories in between are implied, not stored."""
    count = 0
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(set(files)):
            tar.add(root / rel, arcname=rel, recursive=False, filter=_normalise)
            count += 1
    return count


def pack_tree(root: Path, dest: Path) -> int:
    """A tarball of every file below `root` (symlinks kept as links)."""
    files = []
    for here, dirs, names in os.walk(root):
        dirs.sort()
        files += [str((Path(here) / n).relative_to(root)) for n in names]
    return pack(root, files, dest)


def unpack(archive: Path, dest: Path) -> int:
    """Unpack a tarball (plain or compressed) into `dest` with tarfile's `data` filter:
    no absolute paths, no links out of `dest`, no devices. Returns the number of files."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        tar.extractall(dest, filter="data")
    return sum(1 for m in members if m.isfile())


def is_tarball(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


def temporary(directory: Path | None = None, suffix: str = ".tar") -> Path:
    """A new empty file for a tarball; the caller removes it."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, suffix=suffix)
    os.close(fd)
    return Path(name)
