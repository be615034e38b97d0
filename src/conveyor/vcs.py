"""Git repositories, read through bare mirrors (coordinator) and checked out (runners).

The coordinator needs two things from a repository: which commit a ref points at, and the
pipeline file at that commit. Both come from `git` itself on a mirror that is fetched when
asked, so any URL git can fetch (file://, https://, ssh) works.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

GIT_TIMEOUT_S = 120.0
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"}


REPO_SCHEMES = ("http", "https", "ssh", "git", "file")
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?$")
_SCP = re.compile(r"^(?:[A-Za-z0-9._\-]+@)?(?P<host>[^/:@]+):(?!//)(?P<path>.+)$")


def check_repo_url(value: str) -> str:
    """`value` if git can clone it: a URL with scheme http, https, ssh, git or file and a
    host (none for file), the scp-like `user@host:path`, or an absolute path. ValueError
    saying why otherwise (a URL a fetch could never reach is refused, not retried)."""
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        raise ValueError("has whitespace or control characters")
    if value.startswith("/"):
        return value
    scheme, sep, rest = value.partition("://")
    if sep:
        if scheme.lower() not in REPO_SCHEMES:
            raise ValueError(f"scheme {scheme!r} is not one of {', '.join(REPO_SCHEMES)}")
        if scheme.lower() == "file":
            if not rest.startswith("/"):
                raise ValueError("a file:// URL needs an absolute path (file:///srv/repo.git)")
            return value
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        host = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
        if not (_HOST.match(host) or ":" in host):
            raise ValueError(f"host {host!r} is not a host name")
        return value
    scp = _SCP.match(value)
    if scp and _HOST.match(scp["host"]):
        return value
    raise ValueError(
        "is not a repository git can clone: use a URL (https://host/repo.git, "
        "ssh://git@host/repo.git, file:///srv/repo.git), git@host:repo.git, or an absolute path"
    )


class GitError(Exception):
    """A git command failed; the message says which and why."""


async def git(*args: str, cwd: Path | None = None, timeout: float = GIT_TIMEOUT_S) -> bytes:
    """Run git with no prompts; return its stdout or raise GitError."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=GIT_ENV,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise GitError(f"git {args[0]} timed out after {timeout:g}s") from exc
    if proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {err.decode(errors='replace').strip()}")
    return out


class CatFile:
    """One long-running `git cat-file --batch` per mirror: looking up objects and refs
    costs a line on a pipe instead of a process each (a burst of pushes makes thousands of
    lookups). Objects fetched later are found too: git rescans its packs on a miss."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def get(self, spec: str) -> tuple[str, str, bytes] | None:
        """(object id, type, content) of a revision expression, or None if missing."""
        if "\n" in spec:
            raise GitError(f"{spec!r}: object names cannot contain a newline")
        async with self._lock:
            try:
                async with asyncio.timeout(GIT_TIMEOUT_S):
                    return await self._ask(spec)
            except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
                await self.close()
                raise GitError(f"git cat-file failed on {spec!r}: {exc}") from exc

    async def _ask(self, spec: str) -> tuple[str, str, bytes] | None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            proc = self._proc = await asyncio.create_subprocess_exec(
                "git",
                "cat-file",
                "--batch",
                cwd=self.path,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=GIT_ENV,
            )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(spec.encode() + b"\n")
        await proc.stdin.drain()
        header = (await proc.stdout.readline()).decode(errors="replace").split()
        if len(header) != 3:  # "<spec> missing", "<spec> ambiguous"
            return None
        oid, kind, size = header
        data = await proc.stdout.readexactly(int(size) + 1)
        return oid, kind, data[:-1]

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


class GitMirror:
    """A bare mirror of one repository URL under `root`."""

    def __init__(self, root: Path, url: str) -> None:
        self.url = url
        self.path = root / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.git"
        self._lock = asyncio.Lock()
        self.objects = CatFile(self.path)

    async def fetch(self) -> None:
        """Create the mirror, or bring it up to date."""
        async with self._lock:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                await git("clone", "--quiet", "--mirror", self.url, str(self.path))
            else:
                await git("fetch", "--quiet", "--prune", "origin", cwd=self.path)

    async def has(self, sha: str) -> bool:
        """Whether the mirror already holds the commit (then no fetch is needed)."""
        if not self.path.exists():
            return False
        found = await self.objects.get(f"{sha}^{{commit}}")
        return found is not None

    async def resolve(self, ref: str) -> str:
        """The commit sha a ref (branch, tag, full ref or sha) points at."""
        found = await self.objects.get(f"{ref}^{{commit}}") if self.path.exists() else None
        if found is None:
            raise GitError(f"{ref} is not a commit in {self.url}")
        return found[0]

    async def read(self, sha: str, path: str) -> bytes:
        """A file's content at a commit."""
        return (await self.blob(sha, path))[1]

    async def blob(self, sha: str, path: str) -> tuple[str, bytes]:
        """A file's blob id and content at a commit (one round trip to `cat-file`)."""
        found = await self.objects.get(f"{sha}:{path}")
        if found is None or found[1] != "blob":
            raise GitError(f"{path} is not a file in commit {sha[:12]}")
        return found[0], found[2]

    async def checkout(self, sha: str, dest: Path) -> None:
        """A work tree of `sha` at `dest` (files hard-linked from the mirror)."""
        await git("clone", "--quiet", "--no-checkout", str(self.path), str(dest))
        await git("checkout", "--quiet", "--detach", sha, cwd=dest)

    async def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two commits, or None when they share no history."""
        try:
            out = await git("merge-base", a, b, cwd=self.path)
        except GitError:
            return None
        return out.decode().strip() or None

    async def changed_files(self, base: str, head: str) -> tuple[str, ...]:
        """The paths that differ between two commits (renames count as both paths)."""
        out = await git("diff", "--name-only", "--no-renames", "-z", base, head, cwd=self.path)
        return tuple(p for p in out.decode(errors="replace").split("\0") if p)

    async def diff_stat(self, base: str, head: str) -> list[tuple[str, int, int]]:
        """Each path that differs between two commits with its lines added and removed
        (a binary file counts 0 and 0; renames count as both paths)."""
        out = await git("diff", "--numstat", "--no-renames", "-z", base, head, cwd=self.path)
        stats = []
        for line in out.decode(errors="replace").split("\0"):
            added, _, rest = line.partition("\t")
            removed, _, path = rest.partition("\t")
            if path:
                count = (
                    int(added) if added.isdigit() else 0,
                    int(removed) if removed.isdigit() else 0,
                )
                stats.append((path, *count))
        return stats

    async def default_branch(self) -> str | None:
        """The branch the mirror's HEAD names (the remote's default branch)."""
        try:
            head = (self.path / "HEAD").read_text().strip()
        except OSError:
            return None
        return (
            head.removeprefix("ref: refs/heads/") if head.startswith("ref: refs/heads/") else None
        )

    async def message(self, sha: str) -> str:
        """A commit's full message."""
        return (await self._commit(sha)).partition(b"\n\n")[2].decode(errors="replace")

    async def author(self, sha: str) -> str:
        """A commit's author's name (without the address)."""
        header = (await self._commit(sha)).partition(b"\n\n")[0]
        for line in header.decode(errors="replace").splitlines():
            if line.startswith("author "):
                return line.removeprefix("author ").rsplit(" ", 2)[0].split(" <", 1)[0].strip()
        return ""

    async def committed_at(self, sha: str) -> datetime:
        """When a commit was made (its committer's time)."""
        header = (await self._commit(sha)).partition(b"\n\n")[0]
        for line in header.decode(errors="replace").splitlines():
            if line.startswith("committer "):
                return datetime.fromtimestamp(int(line.rsplit(" ", 2)[1]), UTC)
        raise GitError(f"commit {sha[:12]} names no committer")

    async def _commit(self, sha: str) -> bytes:
        found = await self.objects.get(f"{sha}^{{commit}}") if self.path.exists() else None
        if found is None:
            raise GitError(f"{sha} is not a commit in {self.url}")
        return found[2]


class MirrorSet:
    """One mirror per repository URL under `root`, shared by everything in the process
    (so that fetches of one repository never run concurrently)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._mirrors: dict[str, GitMirror] = {}

    def get(self, url: str) -> GitMirror:
        if url not in self._mirrors:
            self._mirrors[url] = GitMirror(self.root, url)
        return self._mirrors[url]

    async def close(self) -> None:
        """Stop the mirrors' long-running git processes."""
        for mirror in self._mirrors.values():
            await mirror.objects.close()
