"""The `conveyor` command: in-process through Typer's runner, and as a real process for
signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli.main import app
from tests.conftest import pipeline_text
from tests.helpers import wait_dead

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "payments-api" / "conveyor.yml"
runner = CliRunner()


def write(tmp_path: Path, body: str, name: str = "conveyor.yml") -> Path:
    path = tmp_path / name
    path.write_text(pipeline_text(body))
    return path


def test_validate_ok_and_errors(tmp_path):
    good = write(tmp_path, "jobs: {a: {script: x}}\n", "good.yml")
    bad = write(tmp_path, "jobs: {a: {script: x, needz: [b]}}\n", "bad.yml")
    ok = runner.invoke(app, ["validate", str(good)])
    assert ok.exit_code == 0 and "is valid" in ok.output
    failed = runner.invoke(app, ["validate", str(good), str(bad)])
    assert failed.exit_code == 1
    assert f"{bad}:4:23: unknown key 'needz' in jobs.a (did you mean 'needs'?)" in failed.output


def test_validate_json(tmp_path):
    bad = write(tmp_path, "jobs: {a: {script: x, when: later}}\n")
    result = runner.invoke(app, ["validate", "--json", str(bad)])
    assert result.exit_code == 1
    (entry,) = json.loads(result.stdout)
    assert entry["valid"] is False
    assert entry["errors"][0]["line"] == 4 and "when" in entry["errors"][0]["message"]


def test_validate_the_example():
    assert runner.invoke(app, ["validate", str(EXAMPLE)]).exit_code == 0


def test_schema_is_json_schema_with_every_top_level_keyword():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert set(schema["properties"]) == {
        "analysis",
        "version",
        "service",
        "team",
        "on",
        "stages",
        "defaults",
        "env",
        "jobs",
        "runtime",
        "risk",
        "environments",
        "merge",
    }
    job = schema["$defs"]["Job"]["properties"]
    assert "if" in job and "script" in job
    assert {"type": "string"} in job["script"]["anyOf"]


def test_explain_names_the_rules(tmp_path):
    file = write(
        tmp_path,
        """\
        on: {push: {branches: [main], paths: ["svc/**"]}}
        jobs:
          build: {script: x}
          deploy: {script: x, needs: [build], if: {branch: release}}
        """,
    )
    result = runner.invoke(
        app,
        ["explain", str(file), "--ref", "refs/heads/main", "--changed", "svc/a.py"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0
    assert "paths [svc/**] match changed svc/a.py" in result.output
    assert "excluded: if.branch 'main' matches none of [release]" in result.output


def test_explain_json_and_new_branch(tmp_path):
    file = write(tmp_path, "on: {push: {paths: ['svc/**']}}\njobs: {build: {script: x}}\n")
    result = runner.invoke(app, ["explain", str(file), "--ref", "feature", "--json"])
    plan = json.loads(result.stdout)
    assert plan["triggered"] and plan["ref"] == "refs/heads/feature"
    assert "every path counts as changed" in plan["reasons"][-1]
    assert plan["jobs"][0]["name"] == "build"


def test_explain_shows_each_required_team_and_its_jobs(tmp_path):
    file = write(
        tmp_path,
        """\
        merge: {required_teams: [checkout, ledger]}
        jobs:
          unit: {script: x, required_for_merge: true}
          contract: {script: x, required_for_merge: checkout}
        """,
    )
    result = runner.invoke(app, ["explain", str(file), "--ref", "main"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "required for merge by team checkout" in result.output
    assert (
        "before a merge: conveyor/checkout/required (contract); conveyor/ledger/required "
        "(no job in this run: its check fails)" in result.output
    )
    plan = json.loads(runner.invoke(app, ["explain", str(file), "--json"]).stdout)
    assert plan["required_teams"] == {"checkout": ["contract"], "ledger": []}
    assert [j["required_by"] for j in plan["jobs"]] == ["team", "checkout"]


def test_explain_skip_ci(tmp_path):
    file = write(tmp_path, "jobs: {build: {script: x}}\n")
    result = runner.invoke(app, ["explain", str(file), "--message", "wip [skip ci]"])
    assert "does not run" in result.output and "[skip ci]" in result.output


def test_invalid_file_exits_2_for_run_and_explain(tmp_path):
    file = write(tmp_path, "jobs: {a: {}}\n")
    assert runner.invoke(app, ["run", str(file)]).exit_code == 2
    assert runner.invoke(app, ["explain", str(file)]).exit_code == 2


def test_run_writes_the_report_and_exit_code(tmp_path):
    file = write(
        tmp_path,
        "jobs:\n  ok: {script: 'echo fine', needs: []}\n  bad: {script: 'exit 4', needs: []}\n",
    )
    report = tmp_path / "out" / "report.json"
    result = runner.invoke(
        app,
        [
            "run",
            str(file),
            "--parallel",
            "2",
            "--report",
            str(report),
            "--data-dir",
            str(tmp_path / "data"),
        ],
    )
    assert result.exit_code == 1
    assert "ok" in result.output and "fine" in result.output
    data = json.loads(report.read_text())
    assert data["status"] == "failed"
    assert [(j["name"], j["status"], j["attempts"], j["exit_code"]) for j in data["jobs"]] == [
        ("ok", "success", 1, 0),
        ("bad", "failed", 1, 4),
    ]
    assert all(isinstance(j["duration_s"], float) for j in data["jobs"])


def test_run_skipped_and_unknown_job(tmp_path):
    file = write(tmp_path, "jobs: {a: {script: 'true'}}\n")
    data_dir = str(tmp_path / "d")
    skipped = runner.invoke(
        app, ["run", str(file), "--message", "[skip ci]", "--data-dir", data_dir]
    )
    assert skipped.exit_code == 3
    unknown = runner.invoke(app, ["run", str(file), "--job", "nope", "--data-dir", data_dir])
    assert unknown.exit_code == 2 and "'nope' is not a job" in unknown.output


def test_secrets_from_environment_are_masked(tmp_path):
    file = write(tmp_path, "jobs: {a: {script: 'echo \"db=$DB_PASSWORD\"'}}\n")
    result = runner.invoke(
        app,
        ["run", str(file), "--data-dir", str(tmp_path / "d")],
        env={"CONVEYOR_SECRETS": "DB_PASSWORD, OTHER", "DB_PASSWORD": "correct-horse"},
    )
    assert result.exit_code == 0
    assert "db=***" in result.output and "correct-horse" not in result.output


def test_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and result.output.strip()


def test_ctrl_c_cancels_cleanly_and_leaves_no_process(tmp_path):
    pidfile = tmp_path / "child.pid"
    file = write(
        tmp_path,
        f"jobs:\n  long: {{script: 'sleep 300 & echo $! > {pidfile}; wait', needs: []}}\n"
        "  next: {script: 'true', needs: [long]}\n",
    )
    report = tmp_path / "report.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "run",
            str(file),
            "--report",
            str(report),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output.decode()
    assert wait_dead(int(pidfile.read_text()))
    data = json.loads(report.read_text())
    assert data["status"] == "canceled"
    assert [j["status"] for j in data["jobs"]] == ["canceled", "canceled"]


def test_example_pipeline_passes_end_to_end(tmp_path):
    """The demo: the example service's whole pipeline, on real processes."""
    report = tmp_path / "report.json"
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor",
            "run",
            str(EXAMPLE),
            "--parallel",
            "2",
            "--ref",
            "refs/heads/main",
            "--report",
            str(report),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    jobs = {j["name"]: j for j in data["jobs"]}
    assert data["status"] == "success"
    assert {n: j["status"] for n, j in jobs.items()} == {
        "compile": "success",
        "unit": "success",
        "functional": "success",
        "package": "success",
        "deploy-staging": "skipped",
        "deploy-production": "skipped",
    }
    assert jobs["unit"]["reports"]["coverage_percent"] >= 90
    assert all(g["passed"] for g in jobs["unit"]["gates"])
    assert jobs["functional"]["reports"]["junit"]["passed"] == 5
    packed = {a["path"] for a in jobs["package"]["artifacts"]}
    assert {"conveyor.yml", "pyproject.toml", "payments/app.py"} <= packed
    assert all(a["digest"].startswith("sha256:") for a in jobs["package"]["artifacts"])


def test_example_service_fail_switch():
    """PAYMENTS_FAIL_RATE makes API answers fail, for later deploy tests."""
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service_dir = EXAMPLE.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "payments.app", "--port", str(port)],
        cwd=service_dir,
        env=os.environ | {"PAYMENTS_FAIL_RATE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/quote?amount=5", timeout=2)
        assert caught.value.code == 500
        caught.value.close()
    finally:
        proc.terminate()
        try:
            # Generous: a loaded CI machine once took longer than 10 s.
            proc.wait(timeout=30)
            assert proc.stderr is not None
            proc.stderr.close()
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # its threads' stacks, to its stderr
            time.sleep(1)
            proc.kill()
            _, stacks = proc.communicate()
            pytest.fail(
                "payments.app did not stop within 30 s of SIGTERM; its threads:\n"
                + stacks.decode(errors="replace")
            )


def test_db_upgrade_creates_the_sqlite_database(tmp_path):
    result = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    from conveyor.storage.migrate import head_revision

    assert f"is at revision {head_revision()}" in result.output
    assert (tmp_path / "data" / "conveyor.db").is_file()
    again = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path / "data")])
    assert again.exit_code == 0 and f"is at revision {head_revision()}" in again.output


def test_db_upgrade_refuses_an_unknown_database(tmp_path):
    result = runner.invoke(
        app,
        ["db", "upgrade", "--data-dir", str(tmp_path)],
        env={"CONVEYOR_DATABASE_URL": "mysql://u@h/db"},
    )
    assert result.exit_code == 2
    assert "unsupported database 'mysql'" in result.output
