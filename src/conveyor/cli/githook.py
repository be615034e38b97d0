"""Bare git repositories as a source: `conveyor project create … --install-hook` writes a
`post-receive` hook; on every push, git runs `conveyor git-hook`, which posts one signed
delivery per updated ref (Standard Webhooks) to each project registered in the repository.

Files in the repository (`$GIT_DIR`):
  hooks/post-receive             calls `<python> -m conveyor git-hook`
  conveyor/targets.json          [{"url": ".../hooks/git/TEAM/PROJECT", "secret": "whsec_…"}]
                                 (mode 600: it holds the webhook secrets)
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from conveyor.intake.providers.base import ZERO_SHA, is_zero, standard_headers

HOOK = "post-receive"
TARGETS = Path("conveyor") / "targets.json"
ATTEMPTS = 4
TIMEOUT_S = 10.0


def git_dir(repo: Path) -> Path:
    """The repository's git directory (a bare repository is its own)."""
    out = subprocess.run(
        ["git", "rev-parse", "--absolute-git-dir"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise ValueError(f"{repo} is not a git repository: {out.stderr.strip()}")
    return Path(out.stdout.strip())


def local_path(repo_url: str) -> Path | None:
    """The path of a repository on this machine, or None for a remote URL."""
    if repo_url.startswith("file://"):
        return Path(repo_url.removeprefix("file://"))
    if "://" in repo_url or (":" in repo_url and not repo_url.startswith("/")):
        return None
    return Path(repo_url)


def install(repo: Path, url: str, secret: str) -> Path:
    """Register a project in the repository's hook (replacing an entry for the same URL)
    and write the hook. Returns the hook's path."""
    gdir = git_dir(repo)
    targets_path = gdir / TARGETS
    targets_path.parent.mkdir(exist_ok=True)
    targets = [t for t in _targets(gdir) if t.get("url") != url]
    targets.append({"url": url, "secret": secret})
    fd = os.open(targets_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(targets, handle, indent=2)
    hook = gdir / "hooks" / HOOK
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(
        "#!/bin/sh\n"
        "# Installed by `conveyor project create --install-hook`: tells Conveyor about pushes.\n"
        f"exec {shlex.quote(sys.executable)} -m conveyor git-hook\n"
    )
    hook.chmod(0o755)
    return hook


def _targets(gdir: Path) -> list[dict[str, str]]:
    path = gdir / TARGETS
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [t for t in data if isinstance(t, dict)] if isinstance(data, list) else []


def _git(gdir: Path, *args: str) -> str | None:
    out = subprocess.run(
        ["git", f"--git-dir={gdir}", *args], capture_output=True, text=True, check=False
    )
    return out.stdout if out.returncode == 0 else None


def _changed(gdir: Path, old: str, new: str, ref: str, default: str | None) -> list[str] | None:
    """The files a ref update changed: the diff from the old commit; for a new branch, the
    diff from its merge-base with the default branch; None when nothing compares."""
    if ref.startswith("refs/tags/"):
        return None
    base: str | None = old
    if is_zero(old):
        base = None
        if default and ref != f"refs/heads/{default}":
            found = _git(gdir, "merge-base", f"refs/heads/{default}", new)
            base = found.strip() if found else None
    if not base:
        return None
    diff = _git(gdir, "diff", "--name-only", "--no-renames", "-z", base, new)
    return None if diff is None else [p for p in diff.split("\0") if p]


def deliveries(gdir: Path, lines: Iterable[str]) -> list[bytes]:
    """One JSON body per `<old> <new> <ref>` line that git gives the hook."""
    head = _git(gdir, "symbolic-ref", "--short", "HEAD")
    default = head.strip() if head else None
    bodies: list[bytes] = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue
        old, new, ref = parts
        message = "" if is_zero(new) else (_git(gdir, "log", "-1", "--format=%B", new) or "")
        body: dict[str, Any] = {
            "ref": ref,
            "before": old,
            "after": new if not is_zero(new) else ZERO_SHA,
            "changed": None if is_zero(new) else _changed(gdir, old, new, ref, default),
            "message": message,
            "default_branch": default,
        }
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def send(url: str, secret: str, body: bytes, client: httpx.Client) -> str:
    """Post one delivery, retrying connection errors, 429 and 5xx; returns what Conveyor
    answered. The delivery id is the body's sha256, so a retry is recognised."""
    msg_id = "git_" + hashlib.sha256(body).hexdigest()
    answer = "not sent"
    for attempt in range(ATTEMPTS):
        headers = standard_headers(secret, msg_id, body, datetime.now(UTC))
        headers["Content-Type"] = "application/json"
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            answer = f"cannot reach {url}: {exc}"
        else:
            if response.status_code < 500 and response.status_code != 429:
                try:
                    status = response.json().get("status") or response.json().get("detail")
                except ValueError:
                    status = response.text[:200]
                return f"{response.status_code} {status}"
            answer = f"{response.status_code} {response.text[:200]}"
            wait = response.headers.get("Retry-After", "")
            if wait.isdigit():
                time.sleep(min(int(wait), 10))
                continue
        time.sleep(0.5 * 2**attempt)
    return answer


def run_hook(gdir: Path, stdin: Iterable[str]) -> list[str]:
    """What the post-receive hook does; returns one line per (project, ref) to show the
    pusher."""
    bodies = deliveries(gdir, stdin)
    shown: list[str] = []
    with httpx.Client(timeout=TIMEOUT_S) as client:
        for target in _targets(gdir):
            for body in bodies:
                ref = json.loads(body)["ref"]
                answer = send(target["url"], target["secret"], body, client)
                shown.append(f"conveyor: {ref} -> {target['url']}: {answer}")
    return shown
