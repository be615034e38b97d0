"""A deploy target with no processes: the fake of Target, shipped in the package so that
the deployment manager can be driven in-process. Like Woodpecker's dummy backend, it
takes its faults from the instance's environment (the service's `runtime.env`):

    FAKE_START_S=2       answers its health path only 2 s after it started
    FAKE_UNHEALTHY=1     never answers its health path
    FAKE_CRASH_S=1.5     its process exits 1.5 s after it started
    FAKE_IGNORE_TERM=1   ignores SIGTERM (only a kill stops it)
    FAKE_FAIL_RATE=0.2   answers that share of its requests with 500 (`serve`)
    FAKE_LATENCY_MS=200  takes that long over the usual 10 ms to answer one
    FAKE_TASK_EXIT=1     its `pre_deploy` task ends with that exit code (at once)

and from calls: `crash(instance)` ends one instance's process now, `sick(instance)`
makes it stop answering. Time is the monotonic clock, or `clock` when given.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conveyor.hosting.target import Handle, Launch, Task, TaskResult

START_S = "FAKE_START_S"
UNHEALTHY = "FAKE_UNHEALTHY"
CRASH_S = "FAKE_CRASH_S"
IGNORE_TERM = "FAKE_IGNORE_TERM"
FAIL_RATE = "FAKE_FAIL_RATE"
LATENCY_MS = "FAKE_LATENCY_MS"
TASK_EXIT = "FAKE_TASK_EXIT"
BASE_MS = 10.0
FIRST_PORT = 40_000


@dataclass
class FakeProcess:
    """One started instance."""

    launch: Launch
    pid: int
    started: float
    alive: bool = True
    sick: bool = False

    def _env(self, key: str) -> str | None:
        return self.launch.env.get(key)

    def running(self, now: float) -> bool:
        crash = self._env(CRASH_S)
        if crash is not None and now - self.started >= float(crash):
            self.alive = False
        return self.alive

    def answers(self, now: float) -> bool:
        if not self.running(now) or self.sick or self._env(UNHEALTHY):
            return False
        return now - self.started >= float(self._env(START_S) or 0)


class FakeTarget:
    """Target without processes. Every call is synchronous and cheap."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.clock = clock
        self.processes: dict[int, FakeProcess] = {}
        self.by_instance: dict[str, FakeProcess] = {}
        self.starts: list[Launch] = []
        self.tasks: dict[str, Task] = {}
        """Every task started, by id."""
        """Every launch, in order (restarts included)."""
        self._pids = itertools.count(10_000)
        self._random = random.Random(7)
        self._ports = itertools.count(FIRST_PORT)

    # -- fault injection -------------------------------------------------------------

    def crash(self, instance: str) -> None:
        """The instance's process exits now."""
        self.by_instance[instance].alive = False

    def sick(self, instance: str, sick: bool = True) -> None:
        """The instance stops (or starts again) answering its health path."""
        self.by_instance[instance].sick = sick

    def answers(self, port: int) -> bool:
        """Whether something on `port` answers its health path (MemoryRouter's probe)."""
        now = self.clock()
        return any(p.launch.port == port and p.answers(now) for p in self.processes.values())

    def serve(self, port: int) -> tuple[int, float]:
        """How the instance on `port` answers one request: (status, milliseconds), per
        its FAKE_FAIL_RATE and FAKE_LATENCY_MS; (503, 0) when none runs there."""
        now = self.clock()
        found = next(
            (p for p in self.processes.values() if p.launch.port == port and p.running(now)),
            None,
        )
        if found is None:
            return 503, 0.0
        rate = float(found.launch.env.get(FAIL_RATE) or 0)
        status = 500 if self._random.random() < rate else 200
        return status, BASE_MS + float(found.launch.env.get(LATENCY_MS) or 0)

    def live(self) -> list[FakeProcess]:
        now = self.clock()
        return [p for p in self.processes.values() if p.running(now)]

    # -- Target ----------------------------------------------------------------------

    def prepare(self, digest: str, blob: Path) -> Path:
        release = self.root / "releases" / digest.removeprefix("sha256:")[:32]
        release.mkdir(parents=True, exist_ok=True)
        return release

    def start(self, launch: Launch) -> Handle:
        process = FakeProcess(launch, next(self._pids), self.clock())
        self.processes[process.pid] = process
        self.by_instance[launch.instance] = process
        self.starts.append(launch)
        return Handle(process.pid, f"fake-{process.pid}")

    def adopt(self, instance: str) -> Handle | None:
        process = self.by_instance.get(instance)
        if process is None or not process.running(self.clock()):
            return None
        return Handle(process.pid, f"fake-{process.pid}")

    def alive(self, handle: Handle) -> bool:
        process = self.processes.get(handle.pid)
        return (
            process is not None
            and handle.started == f"fake-{process.pid}"
            and process.running(self.clock())
        )

    async def healthy(self, port: int, path: str, timeout: float) -> bool:
        return self.answers(port)

    def terminate(self, handle: Handle, force: bool) -> None:
        process = self.processes.get(handle.pid)
        if process is None:
            return
        if force or not process.launch.env.get(IGNORE_TERM):
            process.alive = False

    def allocate_port(self) -> int:
        return next(self._ports)

    def log_path(self, instance: str) -> Path | None:
        return None  # the fake's instances print nothing

    def start_task(self, task: Task) -> None:
        self.tasks.setdefault(task.id, task)

    def task_result(self, task_id: str) -> TaskResult | None:
        task = self.tasks.get(task_id)
        if task is None:
            return None
        code = int(task.env.get(TASK_EXIT) or 0)
        if code == 0:
            return TaskResult(0)
        return TaskResult(code, task.commands[0][0], f"{task.commands[0][0]}: failed")

    def forget(self, instance: str) -> None:
        process = self.by_instance.pop(instance, None)
        if process is not None:
            self.processes.pop(process.pid, None)
