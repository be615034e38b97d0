"""Git repositories, read through bare mirrors (coordinator) and checked out (runners).

The coordinator needs two things from a repository: which commit a ref points at, and the
pipeline file at that commit. Both come from `git` itself on a mirror that is fetched when
asked, so any URL git can fetch (file://, https://, ssh) works.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

GIT_TIMEOUT_S = 120.0


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
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise GitError(f"git {args[0]} timed out after {timeout:g}s") from exc
    if proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {err.decode(errors='replace').strip()}")
    return out


class GitMirror:
    """A bare mirror of one repository URL under `root`."""

    def __init__(self, root: Path, url: str) -> None:
        self.url = url
        self.path = root / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.git"
        self._lock = asyncio.Lock()

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
        try:
            await git("cat-file", "-e", f"{sha}^{{commit}}", cwd=self.path)
        except GitError:
            return False
        return True

    async def resolve(self, ref: str) -> str:
        """The commit sha a ref (branch, tag, full ref or sha) points at."""
        out = await git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=self.path)
        return out.decode().strip()

    async def read(self, sha: str, path: str) -> bytes:
        """A file's content at a commit."""
        return await git("show", f"{sha}:{path}", cwd=self.path)

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

    async def default_branch(self) -> str | None:
        """The branch the mirror's HEAD names (the remote's default branch)."""
        try:
            out = await git("symbolic-ref", "--short", "HEAD", cwd=self.path)
        except GitError:
            return None
        return out.decode().strip() or None

    async def message(self, sha: str) -> str:
        """A commit's full message."""
        return (await git("log", "-1", "--format=%B", sha, cwd=self.path)).decode(errors="replace")


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
