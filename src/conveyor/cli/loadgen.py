"""`conveyor load URL`: a steady HTTP load at a fixed rate, bounded in time, that counts
every failed request. It proves a rollout's zero downtime (the deploy tests, the demo and
bench/deploy.py use it) with keep-alive on or off.

A request fails when it gets a 5xx, no complete answer, or times out. As HTTP clients do
(RFC 9110 section 9.2.2), a GET on a reused keep-alive connection that the server closed
before sending a byte is retried once on a new connection, and counted as `retried`.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

import typer

VERSION = re.compile(rb'"version":\s*"([^"]{1,40})"')
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Tally:
    requests: int = 0
    failed: int = 0
    retried: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    """(seconds since start, what) of each failure, for the report."""

    def summary(self, seconds: float) -> dict[str, object]:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {
            "requests": self.requests,
            "failed": self.failed,
            "retried_idle": self.retried,
            "rps": round(self.requests / seconds, 1) if seconds else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "versions": dict(self.versions),
            "first_failures": [f"{t:.2f}s {what}" for t, what in self.failures[:10]],
            # When failures began and ended (seconds into the load): how long a bad
            # revision was served before it was stopped.
            "failures_from_s": round(self.failures[0][0], 3) if self.failures else None,
            "failures_until_s": round(self.failures[-1][0], 3) if self.failures else None,
        }


class Closed(Exception):
    """The server closed the connection before any byte of the answer."""


class Load:
    """`rate` requests per second over `connections` connections for `seconds`."""

    def __init__(
        self,
        url: str,
        rate: float = 500.0,
        seconds: float = 10.0,
        connections: int = 16,
        keepalive: bool = True,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.rate, self.seconds, self.connections = rate, seconds, connections
        self.keepalive, self.timeout = keepalive, timeout
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        connection = "keep-alive" if keepalive else "close"
        self.request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Connection: {connection}\r\n{extra}\r\n"
        ).encode()
        self.tally = Tally()
        self._stop = asyncio.Event()
        self._started = 0.0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> dict[str, object]:
        self._started = time.monotonic()
        wall = time.time()
        workers = [asyncio.create_task(self._worker(i)) for i in range(self.connections)]
        await asyncio.gather(*workers)
        # The wall clock at its start: a failure's time is started_at + its seconds.
        return self.tally.summary(time.monotonic() - self._started) | {"started_at": wall}

    async def _worker(self, index: int) -> None:
        interval = self.connections / self.rate
        next_at = self._started + interval * index / self.connections
        deadline = self._started + self.seconds
        conn: Conn | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at += interval
            conn = await self._one(conn)
        if conn is not None:
            conn[1].close()

    async def _one(self, conn: Conn | None) -> Conn | None:
        began = time.monotonic()
        self.tally.requests += 1
        try:
            conn, status, body = await self._attempt(conn)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, Closed, ValueError) as exc:
            self._fail(began, type(exc).__name__)
            return None
        self.tally.latencies.append(time.monotonic() - began)
        self.tally.statuses[status] += 1
        if status >= 500:
            self._fail(began, f"HTTP {status}")
        found = VERSION.search(body)
        if found:
            self.tally.versions[found.group(1).decode()] += 1
        if not self.keepalive and conn is not None:
            conn[1].close()
            return None
        return conn

    async def _attempt(self, conn: Conn | None) -> tuple[Conn | None, int, bytes]:
        """One exchange; on a reused connection that the server had closed (nothing of
        the answer arrived), once more on a new connection."""
        reused = conn is not None
        try:
            return await asyncio.wait_for(self._exchange(conn), self.timeout)
        except (Closed, ConnectionResetError, BrokenPipeError):
            if conn is not None:
                conn[1].close()
            if not reused:
                raise
        self.tally.retried += 1
        return await asyncio.wait_for(self._exchange(None), self.timeout)

    def _fail(self, began: float, what: str) -> None:
        self.tally.failed += 1
        self.tally.errors[what] += 1
        self.tally.failures.append((began - self._started, what))

    async def _exchange(self, conn: Conn | None) -> tuple[Conn | None, int, bytes]:
        if conn is None:
            conn = await asyncio.open_connection(self.host, self.port)
        try:
            return await self._on(conn)
        except BaseException:
            # A failed or timed-out exchange leaves no connection behind: one dropped
            # open would be closed by the garbage collector after its loop has ended.
            conn[1].close()
            raise

    async def _on(self, conn: Conn) -> tuple[Conn | None, int, bytes]:
        reader, writer = conn
        writer.write(self.request)
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise Closed() from exc
            raise
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await reader.readexactly(length) if length else b""
        if close:
            writer.close()
            return None, status, body
        return conn, status, body


async def _until_signalled(running: Load) -> dict[str, object]:
    """SIGINT or SIGTERM ends the load early; the summary is printed all the same."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, running.stop)
    return await running.run()


def load(
    url: Annotated[str, typer.Argument(help="http://127.0.0.1:PORT/path (loopback only)")],
    rate: Annotated[float, typer.Option("--rate", help="Requests per second.")] = 500.0,
    seconds: Annotated[float, typer.Option("--seconds", help="How long, at most.")] = 10.0,
    connections: Annotated[int, typer.Option("--connections")] = 16,
    keepalive: Annotated[bool, typer.Option("--keepalive/--no-keepalive")] = True,
) -> None:
    """Send a steady load and print a JSON summary; exits 1 if any request failed."""
    host = urlsplit(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.")):
        typer.echo("error: `conveyor load` only sends traffic to loopback addresses", err=True)
        raise typer.Exit(2)
    summary = asyncio.run(_until_signalled(Load(url, rate, seconds, connections, keepalive)))
    typer.echo(json.dumps(summary, indent=2))
    raise typer.Exit(1 if summary["failed"] else 0)
