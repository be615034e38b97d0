"""The shell executor against real bash processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from conveyor.domain.failure import FailureClass
from conveyor.runner.shell import ExecOutcome, ShellExecutor, render_script
from tests.helpers import wait_dead


def run(commands, tmp_path: Path, *, timeout=30.0, cancel=None, env=None, grace=0.5):
    chunks: list[bytes] = []
    executor = ShellExecutor(kill_grace_s=grace)
    result = asyncio.run(
        executor.run(
            commands,
            cwd=tmp_path,
            env=env or {"PATH": os.environ["PATH"]},
            timeout_s=timeout,
            output=chunks.append,
            cancel=cancel,
        )
    )
    return result, b"".join(chunks).decode()


def test_success_echoes_commands_and_output(tmp_path):
    result, out = run(["echo hello", "echo to-stderr >&2"], tmp_path)
    assert result.outcome is ExecOutcome.PASSED and result.exit_code == 0
    assert result.failure_class is None
    assert out.splitlines() == ["$ echo hello", "hello", "$ echo to-stderr >&2", "to-stderr"]


def test_failure_stops_at_first_failing_command(tmp_path):
    result, out = run(["echo one", "exit 3", "echo never"], tmp_path)
    assert result.outcome is ExecOutcome.FAILED and result.exit_code == 3
    assert result.failure_class is FailureClass.SCRIPT_FAILURE
    assert "never" not in out


def test_pipefail_is_on(tmp_path):
    result, _ = run(["false | cat"], tmp_path)
    assert result.outcome is ExecOutcome.FAILED


def test_environment_is_exactly_what_was_given(tmp_path):
    env = {"PATH": os.environ["PATH"], "ONLY": "this"}
    _, out = run(
        ["env | sort | grep -v '^_=' | grep -v '^PWD=' | grep -v '^SHLVL='"], tmp_path, env=env
    )
    assert out.splitlines()[1:] == ["ONLY=this", f"PATH={os.environ['PATH']}"]


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    result, _ = run([f"sleep 60 & echo $! > {pidfile}; sleep 60"], tmp_path, timeout=0.5)
    assert result.outcome is ExecOutcome.TIMED_OUT
    assert result.failure_class is FailureClass.TIMEOUT
    assert "timed out after 0.5s" in result.detail
    assert result.duration_s < 10
    assert wait_dead(int(pidfile.read_text()))


def test_term_ignoring_process_gets_killed_after_grace(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = f"(trap '' TERM; sleep 60) & echo $! > {pidfile}; wait"
    result, _ = run([script], tmp_path, timeout=0.3, grace=0.3)
    assert result.outcome is ExecOutcome.TIMED_OUT
    assert wait_dead(int(pidfile.read_text()))


def test_background_process_does_not_outlive_the_job(tmp_path):
    """A job that leaves a server running (and holding the output pipe) still finishes."""
    pidfile = tmp_path / "server.pid"
    started = time.monotonic()
    result, out = run([f"sleep 120 & echo $! > {pidfile}", "echo done"], tmp_path)
    assert result.outcome is ExecOutcome.PASSED
    assert out.splitlines()[-1] == "done"
    assert time.monotonic() - started < 10
    assert wait_dead(int(pidfile.read_text()))


def test_cancel_kills_the_group(tmp_path):
    pidfile = tmp_path / "child.pid"

    async def scenario():
        cancel = asyncio.Event()
        executor = ShellExecutor(kill_grace_s=0.5)
        task = asyncio.create_task(
            executor.run(
                [f"sleep 60 & echo $! > {pidfile}; wait"],
                cwd=tmp_path,
                env={"PATH": os.environ["PATH"]},
                timeout_s=60,
                output=lambda _: None,
                cancel=cancel,
            )
        )
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.01)
        cancel.set()
        return await task

    result = asyncio.run(scenario())
    assert result.outcome is ExecOutcome.CANCELED
    assert result.failure_class is None
    assert wait_dead(int(pidfile.read_text()))


def test_missing_shell_is_an_infra_failure(tmp_path):
    executor = ShellExecutor(bash="/nonexistent/bash")
    result = asyncio.run(
        executor.run(["true"], cwd=tmp_path, env={}, timeout_s=5, output=lambda _: None)
    )
    assert result.outcome is ExecOutcome.NOT_STARTED
    assert result.failure_class is FailureClass.INFRA


def test_large_output_is_streamed_completely(tmp_path):
    result, out = run(["head -c 3000000 /dev/zero | tr '\\0' 'x'; echo"], tmp_path)
    assert result.outcome is ExecOutcome.PASSED
    assert out.splitlines()[1] == "x" * 3_000_000


def test_multiline_command_is_shown_once():
    script = render_script(["for i in 1 2; do\n  echo $i\ndone"])
    assert "# (multi-line command)" in script


@pytest.mark.parametrize("quote", ["it's", 'say "hi"', "$HOME", "`date`"])
def test_echoed_commands_are_quoted_safely(tmp_path, quote):
    _, out = run([f"true # {quote}"], tmp_path)
    assert out.splitlines() == [f"$ true # {quote}"]
