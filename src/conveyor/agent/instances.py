"""The host's instances as its agent runs them: started from the desired state (the
artifact fetched by digest and unpacked once), adopted after the agent's own restart
(pid files with start times), watched (alive, exit code, health probe, memory, CPU, log
lines), and stopped when they are no longer wanted (SIGTERM, SIGKILL after the grace
time). The coordinator decides restarts: a crashed instance is reported, and runs again
when its incarnation is raised."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from conveyor.hosting.processes import LocalTarget
from conveyor.hosting.target import Handle, Launch
from conveyor.protocol.agent import DesiredInstance, ObservedInstance

log = logging.getLogger("conveyor.agent")
READ_MAX = 4 << 20
"""The most of an instance's output read per look (the rest is read at the next)."""

Fetch = Callable[[str], Awaitable[Path]]
"""The artifact's file for a digest (fetched, verified and cached)."""


@dataclass
class Running:
    """One instance on this host and what the agent saw of it last."""

    wanted: DesiredInstance
    handle: Handle | None = None
    incarnation: int = 0
    running: bool = False
    exit_code: int | None = None
    healthy: bool | None = None
    problem: str | None = None
    log_offset: int = 0
    log_lines: int = 0
    log_matches: dict[str, int] = field(default_factory=dict)
    """Per pattern the coordinator asked for, the output lines that matched it."""

    def observed(self) -> ObservedInstance:
        rss, cpu = _usage(self.handle.pid) if self.handle and self.running else (None, None)
        return ObservedInstance(
            id=self.wanted.id,
            incarnation=self.incarnation,
            pid=self.handle.pid if self.handle else None,
            started=self.handle.started if self.handle else None,
            running=self.running,
            exit_code=self.exit_code,
            healthy=self.healthy,
            rss=rss,
            cpu_s=cpu,
            log_lines=self.log_lines,
            log_matches=dict(self.log_matches),
            problem=self.problem,
        )

    def state(self) -> tuple[object, ...]:
        """What a report is sent for when it changes (not usage, which always does)."""
        matches = tuple(sorted(self.log_matches.items()))  # a matching line reports at once
        return (self.incarnation, self.running, self.exit_code, self.healthy, self.problem, matches)


@dataclass
class Stopping:
    handle: Handle
    since: float


class Instances:
    def __init__(
        self,
        target: LocalTarget,
        fetch: Fetch,
        address: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.fetch = fetch
        self.address = address
        self.clock = clock
        self.running: dict[uuid.UUID, Running] = {}
        self.stopping: dict[uuid.UUID, Stopping] = {}
        self.grace_s = 5.0

    async def converge(self, desired: list[DesiredInstance], grace_s: float) -> None:
        """Run what `desired` lists; stop what it does not."""
        self.grace_s = grace_s
        wanted = {instance.id: instance for instance in desired}
        for instance_id in list(self.running):
            if instance_id not in wanted:
                self._stop(instance_id)
        self._stop_orphans(wanted.keys())
        for instance in desired:
            current = self.running.get(instance.id)
            if current is None:
                current = self.running[instance.id] = Running(instance)
                adopted = self.target.adopt(str(instance.id))
                if adopted is not None:  # ours from before the agent's restart
                    current.handle, current.running = adopted, True
                    current.incarnation = instance.incarnation
                    log.info("instance %s: adopted (pid %d)", instance.id, adopted.pid)
                    continue
            elif current.incarnation == instance.incarnation and (
                current.running or current.handle is not None
            ):
                current.wanted = instance
                continue
            await self._start(current, instance)

    async def _start(self, current: Running, instance: DesiredInstance) -> None:
        if current.handle is not None and self.target.alive(current.handle):
            self.target.terminate(current.handle, force=True)
        current.wanted, current.incarnation = instance, instance.incarnation
        current.healthy, current.exit_code, current.problem = None, None, None
        try:
            blob = await self.fetch(instance.digest)
            release = self.target.prepare(instance.digest, blob)
        except Exception as exc:  # reported: the coordinator decides what follows
            current.problem, current.running, current.handle = f"{exc}", False, None
            log.warning("instance %s: cannot start: %s", instance.id, exc)
            return
        env = dict(instance.env) | {"CONVEYOR_ADDRESS": self.address}
        launch = Launch(str(instance.id), release, instance.command, instance.port, env)
        current.handle, current.running = self.target.start(launch), True
        log.info("instance %s: started (pid %d)", instance.id, current.handle.pid)

    def _stop(self, instance_id: uuid.UUID) -> None:
        gone = self.running.pop(instance_id)
        if gone.handle is not None and self.target.alive(gone.handle):
            self.target.terminate(gone.handle, force=False)
            self.stopping[instance_id] = Stopping(gone.handle, self.clock())
        else:
            self.target.forget(str(instance_id))

    def _stop_orphans(self, wanted: Iterable[uuid.UUID]) -> None:
        """Instances this host runs that nobody wants (started before the agent's
        restart, or before its host was found lost and theirs placed elsewhere)."""
        known = {str(i) for i in (*wanted, *self.running, *self.stopping)}
        for record in sorted(self.target.pids.glob("*.pid")):
            name = record.stem
            if name in known:
                continue
            handle = self.target.adopt(name)
            if handle is None:
                self.target.forget(name)
                continue
            log.info("instance %s: no longer wanted here; stopping it", name)
            self.target.terminate(handle, force=False)
            with contextlib.suppress(ValueError):
                self.stopping[uuid.UUID(name)] = Stopping(handle, self.clock())

    async def watch(self) -> bool:
        """Look at every instance once; whether anything a report carries changed."""
        changed = False
        for instance_id, stopping in list(self.stopping.items()):
            if not self.target.alive(stopping.handle):
                self.target.forget(str(instance_id))
                del self.stopping[instance_id]
            elif self.clock() - stopping.since > self.grace_s:
                log.warning("instance %s ignored SIGTERM; killing it", instance_id)
                self.target.terminate(stopping.handle, force=True)
        for current in self.running.values():
            before = current.state()
            if current.handle is not None and current.running:
                if not self.target.alive(current.handle):
                    current.running = False
                    current.exit_code = self.target.exit_code(current.handle)
                    current.healthy = False
                elif current.healthy is not True:
                    health = current.wanted.health
                    current.healthy = await self.target.healthy(
                        current.wanted.port, health.path, health.timeout, self.address
                    )
            self._count_lines(current)
            changed = changed or current.state() != before
        return changed

    def _count_lines(self, current: Running) -> None:
        path = self.target.log_path(str(current.wanted.id))
        with contextlib.suppress(OSError), path.open("rb") as handle:
            handle.seek(current.log_offset)
            data = handle.read(READ_MAX)
            cut = data.rfind(b"\n") + 1  # whole lines: one still being written waits
            if not cut and len(data) >= READ_MAX:
                cut = len(data)  # a line longer than a whole read: skipped
            current.log_offset += cut
            current.log_lines += data.count(b"\n", 0, cut)
            patterns = _compiled(current.wanted.log_patterns)
            for text in patterns:
                current.log_matches.setdefault(text, 0)
            if patterns and cut:
                lines = data[:cut].decode(errors="replace").splitlines()
                for text, pattern in patterns.items():
                    found = sum(1 for line in lines if pattern.search(line))
                    current.log_matches[text] = current.log_matches.get(text, 0) + found

    def observed(self) -> list[ObservedInstance]:
        return [current.observed() for current in self.running.values()]


@functools.cache
def _pattern(text: str) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error:  # checked when the pipeline was read; never expected here
        return None


def _compiled(texts: list[str]) -> dict[str, re.Pattern[str]]:
    return {t: p for t in texts if (p := _pattern(t)) is not None}


def _usage(pid: int) -> tuple[int | None, float | None]:
    """Resident memory (bytes) and CPU time (seconds) of a process and its children."""
    try:
        process = psutil.Process(pid)
        rss, cpu = process.memory_info().rss, sum(process.cpu_times()[:2])
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                rss += child.memory_info().rss
                cpu += sum(child.cpu_times()[:2])
    except psutil.Error:
        return None, None
    return rss, round(cpu, 3)
