"""The deploy target's contract: how instances of a revision are started, watched and
stopped. The local target (local.py) runs processes; a Kubernetes target would run pods."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Launch:
    """What starting one instance needs."""

    instance: str
    """The instance's id: names its log and its record on the target."""
    release: Path
    """The unpacked artifact."""
    command: str
    port: int
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A one-off job on the target: a deployment's `pre_deploy` commands, run in order
    in the release's directory with the service's environment."""

    id: str
    release: Path
    commands: tuple[tuple[str, float], ...]
    """(command, timeout in seconds), in order; the first that fails ends the task."""
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    """How a task ended."""

    exit_code: int
    """0: every command succeeded; 124: the failed one timed out; -1: the task's process
    ended without saying how."""
    command: str = ""
    """The command that failed."""
    output: str = ""
    """The tail of the task's output."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class Handle:
    """How the target finds a started instance again, even from another coordinator."""

    pid: int
    started: str
    """The process's start time: a pid reused by another process does not match it."""


class Target(Protocol):
    """Runs instances. Every method is idempotent and may be called from any replica that
    shares the target (the local target: the same host and data directory)."""

    def prepare(self, digest: str, blob: Path) -> Path:
        """Unpack the artifact once; returns its release directory."""
        ...

    def start(self, launch: Launch) -> Handle:
        """Start one instance listening on `launch.port`."""
        ...

    def adopt(self, instance: str) -> Handle | None:
        """The running process of `instance`, if the target knows one."""
        ...

    def alive(self, handle: Handle) -> bool:
        """Whether the instance's process still runs."""
        ...

    async def healthy(self, port: int, path: str, timeout: float) -> bool:
        """Whether the instance answers its health path with a 2xx."""
        ...

    def terminate(self, handle: Handle, force: bool) -> None:
        """Ask it to stop (SIGTERM), or kill it (`force`). Idempotent."""
        ...

    def allocate_port(self) -> int:
        """A free port on the loopback interface."""
        ...

    def forget(self, instance: str) -> None:
        """Drop what the target keeps about a stopped instance. Idempotent."""
        ...

    def start_task(self, task: Task) -> None:
        """Start `task` unless it was started before (idempotent: a driver's redo)."""
        ...

    def task_result(self, task_id: str) -> TaskResult | None:
        """How the task ended, or None while it runs."""
        ...

    def log_path(self, instance: str) -> Path | None:
        """The file the instance's output goes to, when the target keeps one on this
        host (the `logs` analysis provider reads it)."""
        ...
