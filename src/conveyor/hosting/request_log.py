"""HAProxy's per-request log, read live: the data of the `router` analysis provider.

Every environment's frontends log each request (`%f %b %ST %Ta %tsc`) to a ring named
`requests` inside HAProxy (haproxy.render). A reader keeps one connection to the admin
socket with `show events requests -w`, which streams each new line as it is logged, and
files every request under its environment and backend slot with the time it arrived.
Any replica on the host can read the same ring, so whichever holds an environment's
lease measures it.

A reload starts a new worker with a new ring, while the old one finishes what it had.
Every second the reader asks `show info` which worker the admin socket reaches, and
streams any it does not stream yet, from the start of its ring (the requests since the
reload); the old worker's stream goes on for STOP_GRACE_S after that worker logs that
its frontends stopped, since it still answers requests on the keep-alive connections it
holds. Lines it cannot parse (HAProxy's notices) are skipped.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
import time
from pathlib import Path

from conveyor.domain.traffic import Served

log = logging.getLogger("conveyor.deploy.requests")
RING = "requests"
LOG_FORMAT = "%Ts.%ms %f %b %ST %Ta %tsc %{+Q}r"
"""What each request's line says: accept time, frontend, backend, status, total active
time (ms), termination state, and the request line (last, for people reading errors)."""
BACKEND = re.compile(r"^be_(?P<key>\w+)_(?P<side>[ab])$")
RETENTION_S = 300.0
"""How long requests are kept: the analysis reads each window once, within seconds."""
PER_SLOT = 200_000
"""At most this many requests kept per slot (the oldest go first)."""
CHECK_S = 1.0
STOP_GRACE_S = 10.0
"""How long an old worker's ring is still read after its frontends stopped (HAProxy's
`timeout http-keep-alive`): the requests it still answers on open connections."""


def parse_line(line: str) -> tuple[str, str, Served] | None:
    """(route key, side, request) from one log line, or None for anything else."""
    parts = line.split(" ", 6)
    if len(parts) < 6:
        return None
    found = BACKEND.match(parts[2])
    if found is None:
        return None
    try:
        status, active = int(parts[3]), float(parts[4])
    except ValueError:
        return None
    preview = parts[1].endswith("_preview")
    return found["key"], found["side"], Served(0.0, status, max(active, 0.0), preview)


class Timeline:
    """Requests of one slot in the order they arrived."""

    __slots__ = ("served", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.served: list[Served] = []

    def add(self, served: Served) -> None:
        if self.times and served.at < self.times[-1]:  # filed late (the fakes' `at`)
            index = bisect.bisect_right(self.times, served.at)
            self.times.insert(index, served.at)
            self.served.insert(index, served)
            return
        self.times.append(served.at)
        self.served.append(served)

    def trim(self, before: float, keep: int) -> None:
        cut = max(bisect.bisect_left(self.times, before), len(self.times) - keep)
        if cut > 0:
            del self.times[:cut]
            del self.served[:cut]

    def between(self, start: float, end: float) -> list[Served]:
        low = bisect.bisect_left(self.times, start)
        high = bisect.bisect_left(self.times, end)
        return self.served[low:high]


class RequestLog:
    """The requests of every slot, kept for `retention_s`; `start` reads them from
    HAProxy's request ring through the admin socket (`record` files one by hand)."""

    def __init__(self, admin: Path, retention_s: float = RETENTION_S) -> None:
        self.admin = admin
        self.retention_s = retention_s
        self.slots: dict[tuple[str, str], Timeline] = {}
        self.lines = 0
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0
        self._connected = asyncio.Event()
        self._streaming: set[str] = set()
        """Workers (pids) whose ring a stream reads now."""
        self._seen: set[str] = set()
        """Workers streamed before."""

    # -- what the analysis reads -----------------------------------------------------

    def served(self, route: str, side: str, start: float, end: float) -> list[Served]:
        timeline = self.slots.get((route, side))
        return timeline.between(start, end) if timeline is not None else []

    def record(self, key: str, side: str, served: Served) -> None:
        """File one request under its slot, stamped now (never earlier than the last)."""
        self._last = max(self._last, time.time())
        timeline = self.slots.setdefault((key, side), Timeline())
        timeline.add(
            Served(self._last, served.status, served.ms, served.preview)
            if served.at == 0.0
            else served
        )
        self.lines += 1
        if self.lines % 1024 == 0:
            self._trim()

    def _trim(self) -> None:
        before = time.time() - self.retention_s
        for timeline in self.slots.values():
            timeline.trim(before, PER_SLOT)

    # -- the reader ------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nobody to read for
            self._task = asyncio.get_running_loop().create_task(self._read_forever())

    @property
    def workers(self) -> int:
        """How many HAProxy workers (one more per reload) have been read."""
        return len(self._seen)

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Until a stream reads a worker's ring (tests)."""
        self.start()
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read_forever(self) -> None:
        """Every CHECK_S, make sure the worker that `show info` names is streamed. A
        worker's stream ends when its frontends stop (a reload replaced it), so the old
        worker's last requests are read too while the new one's are."""
        streams: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    current = _pid(await _ask(self.admin, "show info"))
                except (OSError, TimeoutError):
                    current = None
                if current is not None and current not in self._streaming:
                    task = asyncio.create_task(self._stream())
                    streams.add(task)
                    task.add_done_callback(streams.discard)
                await asyncio.sleep(CHECK_S)
        finally:
            for task in list(streams):
                task.cancel()
            for task in list(streams):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _stream(self) -> None:
        """Stream the ring of the worker this connection reaches, until that worker's
        frontends stop or the connection ends. In the CLI's interactive mode, so that
        the worker is known before the stream starts: a worker seen before, or the
        first one of this process, from what is new; another one (a reload) from the
        start of its ring, which holds the requests since the reload."""
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_unix_connection(str(self.admin), limit=1 << 20)
        except (OSError, TimeoutError) as exc:
            log.debug("request log: %s", exc)
            return
        worker: str | None = None
        try:
            writer.write(b"prompt\nshow info\n")
            await writer.drain()
            async with asyncio.timeout(5):
                worker = _pid(await reader.readuntil(b"\n\n"))
            if worker is None or worker in self._streaming:
                return  # another stream reads this worker already
            skip = " -n" if not self._seen or worker in self._seen else ""
            self._seen.add(worker)
            self._streaming.add(worker)
            self._connected.set()
            writer.write(f"show events {RING} -w{skip}\n".encode())
            await writer.drain()
            await self._read(reader)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
        ) as exc:
            log.debug("request log: %s", exc)
        finally:
            if worker is not None:
                self._streaming.discard(worker)
            self.reconnects += 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """File each line, until the connection ends or, once the worker's frontends
        stopped (a reload replaced it), STOP_GRACE_S later: it still answers the
        requests already on its open keep-alive connections, and logs them."""
        until: float | None = None
        while True:
            wait = None if until is None else until - time.monotonic()
            if wait is not None and wait <= 0:
                return
            try:
                async with asyncio.timeout(wait):
                    raw = await reader.readline()
            except TimeoutError:
                return
            if not raw:
                return
            line = raw.decode(errors="replace").lstrip("> ").rstrip("\n")
            parsed = parse_line(line)
            if parsed is not None:
                self.record(parsed[0], parsed[1], parsed[2])
            elif until is None and " stopped (cumulated conns" in line:
                until = time.monotonic() + STOP_GRACE_S


async def _ask(admin: Path, command: str) -> bytes:
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_unix_connection(str(admin))
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _pid(info: bytes) -> str | None:
    for line in info.decode(errors="replace").splitlines():
        if line.startswith("Pid:"):
            return line.split(":", 1)[1].strip()
    return None
