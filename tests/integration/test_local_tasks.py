"""The local target's tasks (a deployment's pre_deploy commands) as real processes:
run in order in the release directory with the service's environment, the first failure
or timeout ends them with its output's tail, and starting one twice runs it once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conveyor.hosting.processes import LocalTarget
from conveyor.hosting.target import Task, TaskResult
from tests.helpers import wait_until


def run(target: LocalTarget, task: Task) -> TaskResult:
    target.start_task(task)
    target.start_task(task)  # a driver's redo: not started twice
    return wait_until(lambda: target.task_result(task.id), 20, f"task {task.id}")


def test_commands_run_in_order_in_the_release_with_the_environment(tmp_path: Path):
    release = tmp_path / "release"
    release.mkdir()
    target = LocalTarget(tmp_path / "deploy")
    task = Task(
        "ok",
        release,
        (
            ('echo "$GREETING from $(basename $PWD)" >> ran.txt', 10.0),
            ("echo second >> ran.txt", 10.0),
        ),
        {"GREETING": "hello"},
    )
    assert run(target, task) == TaskResult(0)
    assert (release / "ran.txt").read_text() == "hello from release\nsecond\n"


def test_the_first_failure_ends_the_task_with_its_output(tmp_path: Path):
    target = LocalTarget(tmp_path / "deploy")
    task = Task(
        "fails",
        tmp_path,
        (
            ("echo checking config", 10.0),
            ("echo 'DATABASE_URL is not set' >&2; exit 3", 10.0),
            ("touch never", 10.0),
        ),
    )
    found = run(target, task)
    assert (found.exit_code, found.command) == (3, "echo 'DATABASE_URL is not set' >&2; exit 3")
    assert "checking config" in found.output and found.output.endswith("DATABASE_URL is not set")
    assert not (tmp_path / "never").exists()


def test_a_command_past_its_timeout_is_stopped(tmp_path: Path):
    target = LocalTarget(tmp_path / "deploy")
    found = run(target, Task("slow", tmp_path, (("sleep 30", 0.5),)))
    assert (found.exit_code, found.command) == (124, "sleep 30")


def test_a_task_whose_process_died_without_a_result_failed(tmp_path: Path):
    target = LocalTarget(tmp_path / "deploy")
    task = Task("killed", tmp_path, (("sleep 2", 60.0),))
    target.start_task(task)
    assert target.task_result("killed") is None  # still running
    pid = int((tmp_path / "deploy" / "tasks" / "killed" / "pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)
    found = wait_until(lambda: target.task_result("killed"), 10, "the lost task")
    assert found.exit_code == -1 and "ended without a result" in found.output
    assert target.task_result("unknown") is None
