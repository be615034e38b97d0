"""Reproducible tarballs: the same files give the same bytes, hence the same digest, so a
service built twice from one commit is one artifact. Entries are sorted, and times,
owners and umask noise are cleared; only the executable bit of a mode is kept."""

from __future__ import annotations

import os
import tarfile
import tempfile
import time
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


COMPRESSIONS = ((b"\x1f\x8b", "gz"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"))
"""The magic numbers of the compressions tarfile reads."""


def read_mode(path: Path) -> str | None:
    """The tarfile mode that reads `path` (`r:`, `r:gz`, `r:bz2`, `r:xz`), told from its
    first bytes alone; None when it is none of these. Never decompresses anything, so a
    large file that is not an archive is told at once (tarfile's `r:*` tries every
    decompressor on it in turn)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    for magic, kind in COMPRESSIONS:
        if head.startswith(magic):
            return f"r:{kind}"
    return "r:" if len(head) == 512 and head[257:262] == b"ustar" else None


def is_tarball(path: Path) -> bool:
    return path.is_file() and read_mode(path) is not None


class ScanLimit(Exception):
    """A member was not found within the bytes or the time a scan may take."""


def find_member(
    archive: Path, wanted: str, max_bytes: int, max_seconds: float
) -> tuple[tarfile.TarInfo, bytes] | None:
    """The first member named `wanted` (a leading `./` ignored) and its content (at most
    max_bytes of it), read member by member: the rest of the archive is not read. None
    when the archive ends without it; tarfile.ReadError when `archive` is not one;
    ScanLimit past `max_bytes` of archive or `max_seconds`."""
    mode = read_mode(archive)
    if mode is None:
        raise tarfile.ReadError("not a tar archive (plain, gzip, bzip2 or xz)")
    deadline = time.monotonic() + max_seconds
    with tarfile.open(archive, mode) as tar:  # type: ignore[call-overload]
        while (member := tar.next()) is not None:
            if member.name.removeprefix("./") == wanted:
                if not member.isfile() or member.size > max_bytes:
                    return member, b""
                handle = tar.extractfile(member)
                return member, handle.read() if handle is not None else b""
            if tar.offset > max_bytes or time.monotonic() > deadline:
                raise ScanLimit(
                    f"no {wanted} in the first {tar.offset} bytes "
                    f"({time.monotonic() - deadline + max_seconds:.1f} s)"
                )
    return None


def temporary(directory: Path | None = None, suffix: str = ".tar") -> Path:
    """A new empty file for a tarball; the caller removes it."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, suffix=suffix)
    os.close(fd)
    return Path(name)
