"""Helpers every kind of test shares: free ports, waiting on a condition, real
`conveyor` processes and their health, and two replicas on one PostgreSQL database.
Tests import these from here, never from another test module."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ADMIN = "cvy_admin_integration"
"""The admin token of the integration tests' servers."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def conveyor(*args: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", *args]


def agent_args(
    url: str, token: str, name: str, address: str, data_dir: Path | None = None, *extra: str
) -> list[str]:
    """A `conveyor agent` for host `name` at `address`."""
    args = ["agent", "--server", url, "--token", token, "--name", name, "--address", address]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    return conveyor(*args, *extra)


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(check, timeout: float, what: str, every: float = 0.1):  # type: ignore[no-untyped-def]
    """`check()`'s first true value, asked every `every` seconds; AssertionError naming
    `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_until_async(
    check: Callable[[], Awaitable[Any]], timeout: float, what: str = "a condition"
) -> Any:
    """`wait_until` for a coroutine check, without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def follow_trigger(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`conveyor trigger a/api --ref main --wait`, as a user types it."""
    return subprocess.run(
        conveyor("trigger", "a/api", "--ref", "main", "--wait"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(conveyor(*args), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


@contextmanager
def two_replicas(
    tmp_path: Path, postgres_url: str, *, client_of: int, extra: dict[str, str] | None = None
) -> Iterator[tuple[list[str], dict[str, str], tuple[subprocess.Popen[bytes], ...]]]:
    """Two `conveyor serve` replicas on one PostgreSQL database; the CLI talks to
    replica `client_of`. Yields their URLs, the environment, and the processes."""
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    env = os.environ | {
        "CONVEYOR_ADMIN_TOKEN": ADMIN,
        "CONVEYOR_TOKEN": ADMIN,
        "CONVEYOR_DATABASE_URL": postgres_url,
        "CONVEYOR_SERVER": urls[client_of],
        # Every replica needs the same key to open secrets another replica sealed.
        "CONVEYOR_SECRET_KEY": base64.urlsafe_b64encode(b"k" * 32).decode(),
        **(extra or {}),
    }
    a_args = conveyor("serve", "--port", str(ports[0]), "--data-dir", str(tmp_path / "a"))
    b_args = conveyor("serve", "--port", str(ports[1]), "--data-dir", str(tmp_path / "b"))
    with (
        process(a_args, tmp_path / "a.log", env) as a,
        process(b_args, tmp_path / "b.log", env) as b,
    ):
        for url, log in zip(urls, ("a.log", "b.log"), strict=True):
            try:
                wait_until(lambda url=url: healthy(url), 60, f"replica {url}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; its log:\n{(tmp_path / log).read_text()}") from exc
        yield urls, env, (a, b)
