"""The shell executor: runs a job's script under `bash -eo pipefail` in its own process
group, streams its output, and kills the whole group on timeout, cancel, or when the
script ends (so background processes a job started never outlive it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from conveyor.domain.failure import FailureClass

READ_CHUNK = 64 * 1024
DRAIN_TIMEOUT_S = 2.0
"""How long to keep reading output after the group was killed (a process that left the
group may still hold the pipe open)."""


class ExecOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    NOT_STARTED = "not_started"


@dataclass(frozen=True, slots=True)
class ExecResult:
    outcome: ExecOutcome
    exit_code: int | None
    duration_s: float
    detail: str = ""

    @property
    def failure_class(self) -> FailureClass | None:
        return {
            ExecOutcome.FAILED: FailureClass.SCRIPT_FAILURE,
            ExecOutcome.TIMED_OUT: FailureClass.TIMEOUT,
            ExecOutcome.NOT_STARTED: FailureClass.INFRA,
        }.get(self.outcome)


def render_script(commands: Sequence[str]) -> str:
    """A bash script that echoes each command (`$ cmd`, as GitLab does) and then runs it."""
    lines = ["set -eo pipefail"]
    for command in commands:
        first = command.strip().splitlines()[0] if command.strip() else command
        shown = first + (" # (multi-line command)" if "\n" in command.strip() else "")
        lines.append(f"printf '%s\\n' {shlex.quote('$ ' + shown)}")
        lines.append(command)
    return "\n".join(lines) + "\n"


def _kill_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a reused pgid that is not ours
        return False
    return True


class ShellExecutor:
    """Runs scripts with bash. One instance can run many jobs concurrently.

    `kill_grace_s` is how long a process group gets between SIGTERM and SIGKILL.
    """

    def __init__(self, kill_grace_s: float = 5.0, bash: str = "bash") -> None:
        self.kill_grace_s = kill_grace_s
        self.bash = bash

    async def run(
        self,
        commands: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        timeout_s: float,
        output: Callable[[bytes], None],
        cancel: asyncio.Event | None = None,
        script_path: Path | None = None,
    ) -> ExecResult:
        """Run the commands; `output` receives raw output chunks (stdout and stderr merged).

        Never raises for a failing script: the result says what happened.
        """
        script_file = script_path or cwd / ".conveyor-script.sh"
        started = time.monotonic()
        # Our own pipe, not asyncio's: asyncio's Process.wait() would also wait for the
        # pipe to close, which a background process of the job can keep open for ever.
        read_fd, write_fd = os.pipe()
        try:
            script_file.write_text(render_script(commands))
            proc = await asyncio.create_subprocess_exec(
                self.bash,
                "--noprofile",
                "--norc",
                "-eo",
                "pipefail",
                str(script_file),
                cwd=cwd,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_fd)
            return ExecResult(ExecOutcome.NOT_STARTED, None, time.monotonic() - started, str(exc))
        finally:
            os.close(write_fd)
        stream, transport = await self._open_reader(read_fd)
        reader = asyncio.create_task(self._pump(stream, output))
        outcome = await self._wait(proc, timeout_s, cancel)
        # Whatever the outcome, nothing the job started may outlive it.
        await self._stop_group(proc.pid, only_leftovers=True)
        try:
            await asyncio.wait_for(asyncio.shield(reader), DRAIN_TIMEOUT_S)
        except TimeoutError:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        finally:
            transport.close()
        duration = time.monotonic() - started
        code = proc.returncode
        if outcome is ExecOutcome.PASSED and code != 0:
            outcome = ExecOutcome.FAILED
        detail = {
            ExecOutcome.TIMED_OUT: f"timed out after {timeout_s:g}s; process group killed",
            ExecOutcome.CANCELED: "canceled; process group killed",
            ExecOutcome.FAILED: f"exit code {code}",
        }.get(outcome, "")
        return ExecResult(outcome, code, duration, detail)

    @staticmethod
    async def _open_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=READ_CHUNK, loop=loop)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream, loop=loop), os.fdopen(fd, "rb", 0)
        )
        return stream, transport

    async def _pump(self, stream: asyncio.StreamReader, output: Callable[[bytes], None]) -> None:
        while chunk := await stream.read(READ_CHUNK):
            output(chunk)

    async def _wait(
        self, proc: asyncio.subprocess.Process, timeout_s: float, cancel: asyncio.Event | None
    ) -> ExecOutcome:
        waiter: asyncio.Task[object] = asyncio.create_task(proc.wait())
        watchers = {waiter}
        canceled: asyncio.Task[object] | None = None
        if cancel is not None:
            canceled = asyncio.create_task(cancel.wait())
            watchers.add(canceled)
        try:
            done, _ = await asyncio.wait(
                watchers, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if canceled is not None:
                canceled.cancel()
        if waiter in done:
            return ExecOutcome.PASSED
        outcome = (
            ExecOutcome.CANCELED
            if canceled is not None and canceled in done
            else ExecOutcome.TIMED_OUT
        )
        await self._stop_group(proc.pid, only_leftovers=False)
        await waiter
        return outcome

    async def _stop_group(self, pgid: int, *, only_leftovers: bool) -> None:
        """SIGTERM the group, give it `kill_grace_s`, then SIGKILL whatever is left."""
        if not _kill_group(pgid, signal.SIGTERM):
            return
        grace = min(self.kill_grace_s, 1.0) if only_leftovers else self.kill_grace_s
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if not _kill_group(pgid, 0):
                return
        _kill_group(pgid, signal.SIGKILL)
