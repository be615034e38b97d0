"""The local target: each instance is a process started from the unpacked artifact with
the service's `runtime.command`, in its own session so that it outlives the coordinator
that started it (another replica adopts it by pid and start time). Logs are kept per
instance under `<data-dir>/deploy/logs`; every pid is recorded under `pids/` so that
`stop_everything` can end them all."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from conveyor.artifacts import tarballs
from conveyor.hosting.target import Handle, Launch, Task, TaskResult

BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None when the process
    is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


class LocalTarget:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.logs = root / "logs"
        self.pids = root / "pids"
        self.tasks = root / "tasks"
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._ended: dict[int, int] = {}
        """Exit codes of children that ended, by pid (until `exit_code` reads them)."""
        self._http = httpx.AsyncClient()

    async def close(self) -> None:
        await self._http.aclose()

    def prepare(self, digest: str, blob: Path) -> Path:
        release = self.releases / digest.removeprefix("sha256:")[:32]
        if release.is_dir():
            return release
        partial = release.with_name(release.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        tarballs.unpack(blob, partial)
        try:
            partial.rename(release)
        except OSError:  # another replica unpacked it first
            shutil.rmtree(partial, ignore_errors=True)
        return release

    def start(self, launch: Launch) -> Handle:
        for folder in (self.logs, self.pids):
            folder.mkdir(parents=True, exist_ok=True)
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        env |= launch.env | {"PORT": str(launch.port), "CONVEYOR_INSTANCE": launch.instance}
        return self._spawn(
            ["bash", "-c", f"exec {launch.command}"],
            launch.release,
            env,
            self.logs / f"{launch.instance}.log",
            self.pids / f"{launch.instance}.pid",
        )

    def _spawn(
        self, args: list[str], cwd: Path, env: dict[str, str], output: Path, record: Path
    ) -> Handle:
        """A process in a session of its own (it outlives the coordinator), its output
        appended to `output`, its pid and start time written to `record`."""
        with output.open("ab") as out:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        started = process_start_time(proc.pid) or "0"
        record.write_text(f"{proc.pid} {started}\n")
        return Handle(proc.pid, started)

    def alive(self, handle: Handle) -> bool:
        child = self._children.get(handle.pid)
        if child is not None and (code := child.poll()) is not None:
            self._children.pop(handle.pid, None)
            self._ended[handle.pid] = code
            return False
        return process_start_time(handle.pid) == handle.started

    def exit_code(self, handle: Handle) -> int | None:
        """How the process ended, if it was a child of this target (an adopted one's
        end is not known); read once."""
        return self._ended.pop(handle.pid, None)

    async def healthy(
        self, port: int, path: str, timeout: float, address: str = "127.0.0.1"
    ) -> bool:
        host = f"[{address}]" if ":" in address else address
        try:
            response = await self._http.get(f"http://{host}:{port}{path}", timeout=timeout)
        except httpx.HTTPError:
            return False
        return 200 <= response.status_code < 300

    def terminate(self, handle: Handle, force: bool) -> None:
        if not self.alive(handle):
            return
        with contextlib.suppress(ProcessLookupError):
            if force:  # the whole session: a server's worker processes too
                os.killpg(handle.pid, signal.SIGKILL)
            else:  # the server itself, which stops its workers as it drains
                os.kill(handle.pid, signal.SIGTERM)
        child = self._children.get(handle.pid)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.05)

    def adopt(self, instance: str) -> Handle | None:
        """The running process of an instance started earlier (perhaps by a replica that
        died before recording it), from its pid file."""
        try:
            pid_text, started = (self.pids / f"{instance}.pid").read_text().split()
        except (OSError, ValueError):
            return None
        handle = Handle(int(pid_text), started)
        return handle if self.alive(handle) else None

    def forget(self, instance: str) -> None:
        (self.pids / f"{instance}.pid").unlink(missing_ok=True)

    def allocate_port(self) -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    def log_path(self, instance: str) -> Path:
        return self.logs / f"{instance}.log"

    # -- tasks -----------------------------------------------------------------------

    def start_task(self, task: Task) -> None:
        """Run the commands in a shell script of their own session, which writes
        `result` when it ends (`<index> <exit code>` of the failed command, `-1 0` when
        every one passed); started once per task id."""
        folder = self.tasks / task.id
        if (folder / "pid").exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "commands.json").write_text(json.dumps([c for c, _ in task.commands]))
        script = folder / "run.sh"
        script.write_text(_task_script(task, folder))
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ} | task.env
        self._spawn(["bash", str(script)], task.release, env, folder / "output.log", folder / "pid")

    def task_result(self, task_id: str) -> TaskResult | None:
        folder = self.tasks / task_id
        try:
            index_text, code_text = (folder / "result").read_text().split()
        except (OSError, ValueError):
            return self._lost(folder)
        self._reap(folder)
        code, index = int(code_text), int(index_text)
        if code == 0:
            return TaskResult(0)
        commands = json.loads((folder / "commands.json").read_text())
        command = commands[index] if 0 <= index < len(commands) else ""
        return TaskResult(code, command, _tail(folder / "output.log"))

    def _reap(self, folder: Path) -> None:
        """Wait for an ended task's process, if this target started it."""
        with contextlib.suppress(OSError, ValueError):
            child = self._children.pop(int((folder / "pid").read_text().split()[0]), None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=5)

    def _lost(self, folder: Path) -> TaskResult | None:
        """None while the task's process runs; a failure when it ended with no result."""
        try:
            pid_text, started = (folder / "pid").read_text().split()
        except (OSError, ValueError):
            return None
        handle = Handle(int(pid_text), started)
        if self.alive(handle) or (folder / "result").exists():
            return None
        self._reap(folder)
        return TaskResult(
            -1, "", _tail(folder / "output.log") + "\n(the task ended without a result)"
        )


TAIL_BYTES = 2000
"""How much of a failed task's output becomes the deployment's reason."""


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - TAIL_BYTES))
            return handle.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _task_script(task: Task, folder: Path) -> str:
    """Each command under `timeout`, echoed first; the first failure is the result."""
    result = shlex.quote(str(folder / "result"))
    lines = ["#!/usr/bin/env bash"]
    for index, (command, seconds) in enumerate(task.commands):
        lines += [
            f"echo {shlex.quote('$ ' + command)}",
            f"timeout --kill-after=5 {seconds:g} bash -c {shlex.quote(command)}",
            "code=$?",
            f'if [ "$code" -ne 0 ]; then echo "{index} $code" > {result}.partial; '
            f"mv {result}.partial {result}; exit 0; fi",
        ]
    lines.append(f"echo '-1 0' > {result}.partial && mv {result}.partial {result}")
    return "\n".join(lines) + "\n"


STOP_GRACE_S = 5.0
"""`stop_everything` gives the instances this long to stop on SIGTERM before SIGKILL."""


def stop_everything(root: Path, grace_s: float = STOP_GRACE_S) -> int:
    """Stop every instance the local target under `root` started (tests, `conveyor
    down`): SIGTERM to each one's process group (its session: a server's workers too),
    then SIGKILL to the groups still there after `grace_s`. Returns how many ran."""
    groups: list[int] = []
    for record in sorted((root / "pids").glob("*.pid")):
        try:
            pid_text, started = record.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if process_start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
                groups.append(pid)
        record.unlink(missing_ok=True)
    deadline = time.monotonic() + grace_s
    while groups and time.monotonic() < deadline and any(_group_alive(g) for g in groups):
        time.sleep(0.05)
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    return len(groups)


def _group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still running (zombies aside)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):  # reap our own children among them
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False
