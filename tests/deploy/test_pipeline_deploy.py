"""Build once, deploy many: a pipeline's `deploy:` job deploys the artifact its `package`
job published in the same run, and the job follows the deployment to its end."""

from __future__ import annotations

import shutil
from pathlib import Path

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
    artifacts: {paths: [conveyor.yml, payments/]}
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
    for environment in ("staging", "production"):
        status = stack.api("GET", f"/api/v1/projects/a/svc/environments/{environment}").json()
        assert status["revision"] == 1 and status["digest"] == artifact["digest"]
        import httpx

        assert httpx.get(status["url"] + QUOTE).json()["version"] == "from-pipeline"
    history = stack.api("GET", "/api/v1/projects/a/svc/environments/production").json()["history"]
    assert history[0]["started_by"].startswith("job deploy-production of run ")
