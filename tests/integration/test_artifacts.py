"""Artifacts end to end: a runner publishes a job's files to the coordinator and a
dependant job on a fresh workspace gets them; the CLI uploads, lists and downloads."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from tests.api.conftest import repo_with
from tests.helpers import cli, conveyor, follow_trigger, process

PIPELINE = """\
version: 1
service: api
team: a
jobs:
  build:
    script: ["mkdir -p dist", "echo built-from-$CONVEYOR_SHA > dist/app.txt"]
    artifacts: {paths: [dist/]}
  test:
    needs: [build]
    script: ["cat dist/app.txt"]
"""


def test_a_dependant_job_gets_artifacts_through_the_coordinator(server, tmp_path: Path):
    _, env = server
    repo = repo_with(tmp_path / "repo", PIPELINE)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    cli(env, "team", "create", "a")
    cli(env, "project", "create", "a/api", "--repo", f"file://{repo}")
    registration = cli(env, "runner-token", "create", "--team", "a")
    runner = conveyor("runner", "--token", registration, "--data-dir", str(tmp_path / "r1"))
    with process(runner, tmp_path / "runner.log", env):
        done = follow_trigger(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"built-from-{sha}" in done.stdout
    assert "fetched 1 artifact file(s) from 'build'" in done.stdout
    (listed,) = json.loads(cli(env, "artifacts", "list", "a/api", "--json"))
    assert listed["name"] == "build" and listed["sha"] == sha and listed["job_name"] == "build"
    shown = cli(env, "artifacts", "show", "a/api", listed["digest"])
    assert f"commit {sha[:12]}" in shown and "job 'build'" in shown


def test_upload_prints_the_digest_last_and_download_verifies_it(server, tmp_path: Path):
    _, env = server
    cli(env, "team", "create", "a")
    cli(env, "project", "create", "a/api", "--repo", f"file://{tmp_path}")
    service = tmp_path / "service"
    service.mkdir()
    (service / "conveyor.yml").write_text("version: 1\n")
    (service / "app.py").write_text("print('hi')\n")
    printed = cli(env, "artifacts", "upload", "a/api", str(service), "--name", "svc")
    digest = printed.splitlines()[-1]
    assert digest.startswith("sha256:") and len(digest) == 71
    # Packing is reproducible: the same directory uploads as the same artifact.
    assert cli(env, "artifacts", "upload", "a/api", str(service)).splitlines()[-1] == digest
    target = tmp_path / "down" / "svc.tar"
    cli(env, "artifacts", "download", "a/api", digest, "-o", str(target))
    assert "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest() == digest
    # A tarball is uploaded as it is.
    assert cli(env, "artifacts", "upload", "a/api", str(target)).splitlines()[-1] == digest
    missing = subprocess.run(
        conveyor("artifacts", "upload", "a/api", str(tmp_path / "nope")),
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
