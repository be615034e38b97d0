"""`conveyor run`'s engine against real processes, files and git."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from conveyor.domain.failure import FailureClass
from conveyor.domain.status import JobStatus, RunStatus
from conveyor.pipeline.loader import load_pipeline
from conveyor.pipeline.plan import compile_plan
from conveyor.runner.attempt import RunOptions
from conveyor.runner.local import LocalRun, RunResult
from tests.conftest import RecordingObserver, event, pipeline_text
from tests.helpers import wait_dead


def service(tmp_path: Path, body: str, files: dict[str, str] | None = None) -> Path:
    root = tmp_path / "svc"
    root.mkdir()
    (root / "conveyor.yml").write_text(pipeline_text(body))
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def run_service(
    root: Path,
    observer: RecordingObserver,
    *,
    ev=None,
    parallel: int = 1,
    secrets: dict[str, str] | None = None,
    selected: tuple[str, ...] = (),
    data_dir: Path | None = None,
) -> RunResult:
    plan = compile_plan(load_pipeline(root / "conveyor.yml").spec, ev or event())
    options = RunOptions(
        source_dir=root,
        data_dir=data_dir or root.parent / "data",
        parallel=parallel,
        secrets=secrets or {},
        selected=selected,
        kill_grace_s=0.5,
    )
    return asyncio.run(LocalRun(plan, options, observer).execute())


def statuses(result: RunResult) -> dict[str, str]:
    return {r.job.name: r.status.value for r in result.jobs}


def test_dag_runs_and_artifacts_flow_to_dependants(tmp_path, observer):
    root = service(
        tmp_path,
        """\
        stages: [build, test]
        jobs:
          build:
            stage: build
            script: [mkdir -p dist, "echo built-$CONVEYOR_JOB_NAME > dist/out.txt"]
            artifacts: {paths: [dist/]}
          check:
            script: [cat dist/out.txt, test "$(cat dist/out.txt)" = built-build]
        """,
    )
    result = run_service(root, observer)
    assert result.status is RunStatus.SUCCESS
    assert statuses(result) == {"build": "success", "check": "success"}
    (artifact,) = result.jobs[0].last.artifacts
    assert artifact.path == "dist/out.txt" and artifact.digest.startswith("sha256:")
    assert "built-build" in observer.output("check")
    report = result.as_report()
    assert report["status"] == "success"
    job = report["jobs"][0]
    assert {"name", "status", "attempts", "exit_code", "duration_s"} <= set(job)
    assert (job["name"], job["status"], job["attempts"], job["exit_code"]) == (
        "build",
        "success",
        1,
        0,
    )
    json.dumps(report)  # serialisable


def test_failure_skips_dependants_and_honours_when(tmp_path, observer):
    root = service(
        tmp_path,
        """\
        jobs:
          build: {script: "exit 2", needs: []}
          test: {script: "echo never", needs: [build]}
          alert: {script: "echo alerting", needs: [test], when: on_failure}
          cleanup: {script: "echo cleanup", needs: [test], when: always}
          happy: {script: "echo no", needs: [test], when: on_success}
        """,
    )
    result = run_service(root, observer)
    assert result.status is RunStatus.FAILED
    assert statuses(result) == {
        "build": "failed",
        "test": "skipped",
        "alert": "success",
        "cleanup": "success",
        "happy": "skipped",
    }
    build = result.jobs[0]
    assert build.last.exit_code == 2 and build.last.failure_class is FailureClass.SCRIPT_FAILURE
    assert {r.job.name: r.reason for r in result.jobs}["test"] == "'build' failed"
    assert "never" not in [line for _, line in observer.lines]


def test_checkout_false_starts_in_an_empty_workspace(tmp_path, observer):
    root = service(
        tmp_path,
        "defaults: {checkout: false}\n"
        "jobs:\n"
        "  bare: {script: 'test ! -e conveyor.yml && test ! -e app.py'}\n"
        "  full: {script: 'test -e conveyor.yml && test -e app.py', checkout: true}\n",
        files={"app.py": "x = 1\n"},
    )
    result = run_service(root, observer)
    assert statuses(result) == {"bare": "success", "full": "success"}


def test_allowed_failure_does_not_fail_the_run(tmp_path, observer):
    root = service(
        tmp_path,
        "jobs:\n  a: {script: 'exit 1', allow_failure: true}\n  b: {script: 'true', needs: [a]}\n",
    )
    result = run_service(root, observer)
    assert result.status is RunStatus.SUCCESS
    assert statuses(result) == {"a": "failed", "b": "success"}


def test_retries_follow_failure_classes_and_are_recorded(tmp_path, observer):
    counter = tmp_path / "count"
    root = service(
        tmp_path,
        f"""\
        jobs:
          flaky:
            script: ["echo x >> {counter}", "test $(wc -l < {counter}) -ge 3"]
            retry: {{max: 2, when: [script_failure]}}
          slow:
            script: sleep 30
            timeout: 200ms
            retry: {{max: 2, when: [script_failure]}}
        """,
    )
    result = run_service(root, observer, parallel=2)
    flaky, slow = result.jobs
    assert flaky.status is JobStatus.SUCCESS
    assert [a.status.value for a in flaky.attempts] == ["failed", "failed", "success"]
    assert [a.failure_class for a in flaky.attempts] == [
        FailureClass.SCRIPT_FAILURE,
        FailureClass.SCRIPT_FAILURE,
        None,
    ]
    # A timeout is not in `when`, so it is not retried.
    assert slow.status is JobStatus.FAILED and len(slow.attempts) == 1
    assert slow.last.failure_class is FailureClass.TIMEOUT
    history = result.as_report()["jobs"][0]["attempt_history"]
    assert [h["attempt"] for h in history] == [1, 2, 3]


def test_gates_fail_the_job_with_both_numbers(tmp_path, observer):
    coverage = '<coverage lines-valid="10" lines-covered="7"/>'
    junit = '<testsuite><testcase name="a"/><testcase name="b"><failure/></testcase></testsuite>'
    root = service(
        tmp_path,
        """\
        jobs:
          unit:
            script: [mkdir -p r, "cp cov.xml r/", "cp junit.xml r/"]
            reports: {junit: "r/*.xml", coverage: r/cov.xml}
            gates: {coverage_min: 80, tests_must_pass: true}
            retry: 2
        """,
        files={"cov.xml": coverage, "junit.xml": junit},
    )
    result = run_service(root, observer)
    (unit,) = result.jobs
    assert unit.status is JobStatus.FAILED
    assert len(unit.attempts) == 1, "a gate failure is never retried"
    assert unit.last.failure_class is FailureClass.GATE
    assert unit.reason == "coverage 70% is below the minimum 80%; 1 of 2 tests failed: b"
    reports = result.as_report()["jobs"][0]
    assert reports["reports"]["coverage_percent"] == 70.0
    assert reports["reports"]["junit"]["failed_tests"] == ["b"]
    assert [g["passed"] for g in reports["gates"]] == [False, False]


def test_missing_report_fails_its_gate(tmp_path, observer):
    root = service(
        tmp_path,
        "jobs:\n  unit:\n    script: 'true'\n    reports: {coverage: c.xml}\n"
        "    gates: {coverage_min: 1}\n",
    )
    result = run_service(root, observer)
    assert result.jobs[0].reason == "coverage gate needs a report: c.xml was not written"


def test_secrets_are_masked_in_output_and_log_file(tmp_path, observer):
    root = service(
        tmp_path,
        """\
        jobs:
          leak:
            script:
              - echo "token is $API_TOKEN"
              - >-
                printf 'split: %s' "${API_TOKEN:0:5}"; sleep 0.2; printf '%s\\n' "${API_TOKEN:5}"
        """,
    )
    secret = "tok-1234567890"
    result = run_service(root, observer, secrets={"API_TOKEN": secret})
    assert result.status is RunStatus.SUCCESS
    text = "\n".join(observer.output("leak"))
    assert "token is ***" in text and "split: ***" in text
    assert secret not in text
    logs = list((tmp_path / "data" / "runs").rglob("*.log"))
    assert logs and all(secret not in p.read_text() for p in logs)


def test_job_environment_is_clean_and_carries_conveyor_variables(tmp_path, observer, monkeypatch):
    monkeypatch.setenv("LEAKY_PARENT_VAR", "x")
    root = service(
        tmp_path,
        """\
        env: {GLOBAL: g}
        jobs:
          t:
            matrix: {PY: ["3.12"]}
            script: env | sort
        """,
    )
    run_service(root, observer, ev=event(ref="refs/heads/main"))
    env = dict(line.split("=", 1) for line in observer.output("t: [3.12]") if "=" in line)
    assert "LEAKY_PARENT_VAR" not in env
    assert env["GLOBAL"] == "g" and env["PY"] == "3.12" and env["CONVEYOR_MATRIX_PY"] == "3.12"
    assert env["CONVEYOR_JOB_NAME"] == "t: [3.12]" and env["CONVEYOR_BRANCH"] == "main"
    assert env["CONVEYOR_REF"] == "refs/heads/main" and env["CI"] == "true"
    assert env["CONVEYOR_RUN_ID"] and env["CONVEYOR_ATTEMPT"] == "1"
    assert env["PATH"] == os.environ["PATH"]


def test_jobs_run_in_parallel_up_to_the_limit(tmp_path, observer):
    """Each job waits for the other's marker: they only both pass if they overlap."""
    body = f"""\
    jobs:
      a: {{script: "touch {tmp_path}/a; for i in $(seq 100); do [ -e {tmp_path}/b ] && exit 0; sleep 0.05; done; exit 1"}}
      b: {{script: "touch {tmp_path}/b; for i in $(seq 100); do [ -e {tmp_path}/a ] && exit 0; sleep 0.05; done; exit 1"}}
    """
    root = service(tmp_path, body)
    assert run_service(root, observer, parallel=2).status is RunStatus.SUCCESS
    for marker in ("a", "b"):
        (tmp_path / marker).unlink()
    serial = run_service(root, observer, parallel=1)
    assert statuses(serial) == {"a": "failed", "b": "success"}


def test_workspace_is_a_copy_of_tracked_files(tmp_path, observer):
    root = service(
        tmp_path,
        "jobs:\n  t: {script: ['ls -a', 'echo changed > data.txt']}\n",
        files={"data.txt": "original", ".gitignore": "ignored.txt\n", "ignored.txt": "x"},
    )
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    run_service(root, observer, data_dir=root / ".conveyor")
    listing = observer.output("t")
    assert "data.txt" in listing and ".gitignore" in listing
    assert "ignored.txt" not in listing and ".conveyor" not in listing
    assert (root / "data.txt").read_text() == "original"


def test_cache_is_restored_on_the_next_run(tmp_path, observer):
    root = service(
        tmp_path,
        """\
        jobs:
          deps:
            script: ["test -d vendor && echo restored || (mkdir vendor && echo fresh > vendor/x)"]
            cache: {key: {files: [lock.txt]}, paths: [vendor]}
        """,
        files={"lock.txt": "v1"},
    )
    first = run_service(root, observer)
    assert first.jobs[0].last.cache == "miss"
    second = run_service(root, RecordingObserver())
    assert second.jobs[0].last.cache == "hit"
    (root / "lock.txt").write_text("v2")
    third = run_service(root, RecordingObserver())
    assert third.jobs[0].last.cache == "miss"


def test_selected_job_runs_with_its_needs_and_plays_manual(tmp_path, observer):
    root = service(
        tmp_path,
        """\
        jobs:
          build: {script: 'true', needs: []}
          lint: {script: 'true', needs: []}
          ship: {script: 'true', needs: [build], when: manual}
        """,
    )
    unselected = run_service(root, observer)
    assert statuses(unselected)["ship"] == "manual"
    assert unselected.status is RunStatus.SUCCESS
    result = run_service(root, RecordingObserver(), selected=("ship",))
    assert statuses(result) == {"build": "success", "ship": "success"}


def test_skip_ci_skips_the_run(tmp_path, observer):
    root = service(tmp_path, "jobs:\n  a: {script: 'true'}\n")
    result = run_service(root, observer, ev=event(message="docs [skip ci]"))
    assert result.status is RunStatus.SKIPPED
    assert result.as_report()["jobs"] == []
    assert result.as_report()["reasons"] == ["the commit message contains [skip ci]"]


def test_deploy_jobs_are_not_run_locally(tmp_path, observer):
    root = service(tmp_path, "jobs:\n  d: {deploy: {environment: staging}}\n")
    result = run_service(root, observer)
    assert statuses(result) == {"d": "skipped"}
    assert "deployment manager" in result.jobs[0].reason


def test_after_script_runs_after_failure_without_changing_status(tmp_path, observer):
    root = service(
        tmp_path,
        "jobs:\n  a: {script: 'exit 1', after_script: ['echo tidy', 'exit 5']}\n",
    )
    result = run_service(root, observer)
    assert result.jobs[0].status is JobStatus.FAILED and result.jobs[0].last.exit_code == 1
    out = observer.output("a")
    assert "tidy" in out
    assert any("after_script did not pass" in line for line in out)


def test_cancel_stops_running_jobs_and_cancels_the_rest(tmp_path, observer):
    pidfile = tmp_path / "pid"
    root = service(
        tmp_path,
        f"jobs:\n  long: {{script: 'sleep 60 & echo $! > {pidfile}; wait'}}\n"
        "  after: {script: 'true', needs: [long]}\n",
    )
    plan = compile_plan(load_pipeline(root / "conveyor.yml").spec, event())
    options = RunOptions(source_dir=root, data_dir=tmp_path / "data", kill_grace_s=0.5)
    local = LocalRun(plan, options, observer)

    async def scenario() -> RunResult:
        task = asyncio.create_task(local.execute())
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.01)
        local.cancel()
        return await task

    result = asyncio.run(scenario())
    assert result.status is RunStatus.CANCELED
    assert statuses(result) == {"long": "canceled", "after": "canceled"}
    assert wait_dead(int(pidfile.read_text()))
