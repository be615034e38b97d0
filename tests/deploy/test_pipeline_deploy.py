"""Build once, deploy many: a pipeline's `deploy:` job deploys the artifact its `package`
job published in the same run, and the job follows the deployment to its end."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.api.conftest import repo_with
from tests.deploy.conftest import EXAMPLE, QUOTE, Stack
from tests.helpers import conveyor, process

PIPELINE = """\
version: 1
service: payments-api
team: a
jobs:
  package:
    script: ["python3 -m compileall -q payments"]
    artifacts: {name: payments-api, paths: [conveyor.yml, payments/]}
  deploy-staging:
    needs: [package]
    deploy: {environment: staging, strategy: rolling}
  deploy-production:
    needs: [package, deploy-staging]
    deploy:
      environment: production
      strategy: {canary: {steps: [{weight: 50}, {pause: 1s}]}}
runtime:
  command: python3 -m payments.app --port $PORT
  replicas: 1
  health: {path: /healthz, start_period: 3s}
  drain: 2s
  env: {PAYMENTS_VERSION: from-pipeline}
"""


def git_time(source: Path) -> datetime:
    """HEAD's committer time."""
    stamp = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=source, capture_output=True, text=True
    ).stdout
    return datetime.fromtimestamp(int(stamp), UTC)


def repo(path: Path) -> Path:
    shutil.copytree(EXAMPLE / "payments", path / "payments")
    return repo_with(path, PIPELINE)


def test_a_deploy_job_ships_the_artifact_built_earlier_in_the_run(stack: Stack, tmp_path: Path):
    source = repo(tmp_path / "svc")
    stack.cli("project", "create", "a/svc", "--repo", f"file://{source}")
    registration = stack.cli("runner-token", "create", "--team", "a").stdout.strip()
    runner = conveyor("runner", "--token", registration, "--data-dir", str(tmp_path / "runner"))
    with process(runner, tmp_path / "runner.log", stack.env):
        done = stack.cli("trigger", "a/svc", "--ref", "main", "--wait", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "deploying sha256:" in done.stdout and "to staging as revision 1 (rolling)" in done.stdout
    )
    assert "production revision 1: succeeded" in done.stdout
    (artifact,) = stack.api("GET", "/api/v1/projects/a/svc/artifacts").json()
    assert artifact["name"] == "payments-api"  # its `artifacts: name`, not the job's
    for environment in ("staging", "production"):
        status = stack.api("GET", f"/api/v1/projects/a/svc/environments/{environment}").json()
        assert status["revision"] == 1 and status["digest"] == artifact["digest"]
        import httpx

        assert httpx.get(status["url"] + QUOTE).json()["version"] == "from-pipeline"
    history = stack.api("GET", "/api/v1/projects/a/svc/environments/production").json()["history"]
    assert history[0]["started_by"].startswith("job deploy-production of run ")
    # DORA's lead time starts at the commit: its time, read from the project's mirror.
    committed = git_time(source)
    assert datetime.fromisoformat(history[0]["committed_at"]) == committed
    assert history[0]["fix"] is False
    # Each deploy job ran once: the end of its deployment does not send it round again.
    run_id = stack.api("GET", "/api/v1/runs").json()["items"][0]["id"]
    jobs = {j["name"]: j for j in stack.api("GET", f"/api/v1/runs/{run_id}").json()["jobs"]}
    for name in ("deploy-staging", "deploy-production"):
        assert [a["number"] for a in jobs[name]["history"]] == [1], jobs[name]["history"]
    assert "attempt 2 of" not in done.stdout
    # In the UI, a deploy job links to its deployment and the deployment to its run.
    import httpx

    with httpx.Client(base_url=stack.url) as ui:
        assert ui.post("/login", data={"token": stack.env["CONVEYOR_TOKEN"]}).status_code == 303
        page = ui.get(f"/runs/{run_id}").text
        assert 'href="/p/a/svc/env/staging">→ staging revision 1<' in page, page
        assert 'href="/p/a/svc/env/production">→ production revision 1<' in page
        environment = ui.get("/p/a/svc/env/production").text
        assert f'href="/runs/{run_id}">its run<' in environment
    # The same commit run again: its package publishes the same content, and each deploy
    # job finds it and succeeds, following the revision the environment already runs.
    with process(runner, tmp_path / "runner-again.log", stack.env):
        again = stack.cli("trigger", "a/svc", "--ref", "main", "--wait", check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "production revision 1: succeeded" in again.stdout
    assert len(stack.api("GET", "/api/v1/projects/a/svc/artifacts").json()) == 1
    status = stack.api("GET", "/api/v1/projects/a/svc/environments/production").json()
    assert status["revision"] == 1


SMOKED = """\
version: 1
service: payments-api
team: a
analysis:
  templates:
    smoke:
      interval: 1s
      metrics: [{name: smoke, provider: job, job: smoke-test, max: 0}]
jobs:
  package:
    script: ["python3 -m compileall -q payments"]
    artifacts: {paths: [conveyor.yml, payments/]}
  smoke-test:
    when: manual   # runs only when an analysis starts it, against the canary
    script:
      - python3 -c "import os, urllib.request; print(urllib.request.urlopen(os.environ['CONVEYOR_PREVIEW_URL'] + '/api/v1/quote?amount=1').read().decode())"
  deploy-production:
    needs: [package]
    deploy:
      environment: production
      strategy: {canary: {steps: [{weight: 10}, {analysis: smoke, for: 2s}, {weight: 100}]}}
runtime:
  command: python3 -m payments.app --port $PORT
  replicas: 1
  health: {path: /healthz, start_period: 3s}
  drain: 2s
  env: {PAYMENTS_VERSION: @version@}
"""


def test_a_smoke_job_judges_the_canary_through_its_preview(stack: Stack, tmp_path: Path):
    source = tmp_path / "svc"
    shutil.copytree(EXAMPLE / "payments", source / "payments")
    repo_with(source, SMOKED.replace("@version@", "v1"))
    stack.cli("project", "create", "a/svc", "--repo", f"file://{source}")
    registration = stack.cli("runner-token", "create", "--team", "a").stdout.strip()
    runner = conveyor(
        "runner", "--token", registration, "--concurrency", "2", "--data-dir", str(tmp_path / "r")
    )
    with process(runner, tmp_path / "runner.log", stack.env):
        first = stack.cli("trigger", "a/svc", "--ref", "main", "--wait", check=False)
        assert first.returncode == 0, first.stdout + first.stderr
        # v2: PAYMENTS_FAIL_RATE makes its every quote fail, so the smoke job fails.
        (source / "conveyor.yml").write_text(
            SMOKED.replace("@version@", "v2").replace(
                "env: {PAYMENTS_VERSION: v2}",
                'env: {PAYMENTS_VERSION: v2, PAYMENTS_FAIL_RATE: "1"}',
            )
        )
        for args in (
            ["add", "-A"],
            ["-c", "user.email=t@x", "-c", "user.name=t", "commit", "-qm", "v2"],
        ):
            subprocess.run(["git", *args], cwd=source, check=True)
        second = stack.cli("trigger", "a/svc", "--ref", "main", "--wait", check=False)
    assert second.returncode != 0, second.stdout
    history = stack.api("GET", "/api/v1/projects/a/svc/environments/production").json()["history"]
    assert history[0]["phase"] == "aborted", history[0]
    assert history[0]["message"].startswith(
        "analysis smoke failed: smoke: 1 is above 0 (job smoke-test failed"
    )
    runs = stack.api("GET", "/api/v1/projects/a/svc/runs").json()["items"]
    (smoke,) = [r for r in runs if r["ref"].startswith("refs/conveyor/analysis/")]
    assert smoke["ref"].endswith("/step-1") and smoke["status"] == "failed"
    # The deploy job of v2's pipeline failed with the verdict (the smoke run, on a ref
    # of its own, superseded nothing of it).
    assert "analysis smoke failed" in second.stdout, second.stdout
    # DORA: v1 went to production; v2 changed production (its canary took traffic) and
    # an analysis aborted it, a failed change recovered when the abort ended.
    v1, v2 = history[1], history[0]
    dora = stack.api("GET", "/api/v1/teams/a/dora", params={"window": "1d"}).json()
    keys = dora["services"]["svc"]
    assert (keys["deployments"], keys["changes"], keys["failures"]) == (1, 2, 1)
    assert keys["change_failure_rate"] == 0.5 and keys["bands"]["change_failure_rate"] == "low"
    lead = datetime.fromisoformat(v1["finished_at"]) - datetime.fromisoformat(v1["committed_at"])
    assert keys["lead_times"] == 1
    assert keys["lead_time_seconds"] == pytest.approx(lead.total_seconds(), abs=0.01)
    outage = datetime.fromisoformat(v2["finished_at"]) - datetime.fromisoformat(v2["started_at"])
    assert keys["recovery_seconds"] == pytest.approx(outage.total_seconds(), abs=0.01)
    assert dora["overall"] == keys
    cli = stack.cli("dora", "a", "--window", "1d")
    assert "svc" in cli.stdout and "50% (1/2)" in cli.stdout, cli.stdout
