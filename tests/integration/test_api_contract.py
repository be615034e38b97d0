"""The API's contract is true: schemathesis (a tool nobody here wrote) drives a real
`conveyor serve` from its live OpenAPI document, as the admin and as a team's developer,
with every check it has (`--checks all`: no 5xx, every answer in its documented status
codes and schema, schema-valid requests accepted and invalid ones refused, 405 with
`Allow` for a method a path does not take, stateful links). Bounded: a fixed seed,
deterministic generation and a few examples per operation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import git_repo
from tests.helpers import ADMIN, cli
from tests.integration.conftest import serving

REPO = Path(__file__).resolve().parents[2]
SEED = "20261207"
EXAMPLES = "6"


def schemathesis(url: str, token: str, report: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("schemathesis")
    env = os.environ | {
        "PYTHONPATH": str(REPO),
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
    }
    return subprocess.run(
        [
            str(binary if binary.exists() else shutil.which("schemathesis")),
            "run",
            f"{url}/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            "--generation-deterministic",
            "--workers",
            "2",
            # A job's log stream (server-sent events) lasts until the job ends, and a
            # job the fuzzer triggers never does here (no runner): it would hold its
            # request open forever. It has tests of its own (tests/api/test_api.py).
            "--exclude-path-regex",
            "/log/stream$",
            # No other request takes long: one that does is reported by name, not left
            # to stall the whole run.
            "--request-timeout",
            "60",
            "--report",
            "junit",
            "--report-dir",
            str(report),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_schemathesis_finds_nothing_as_the_admin_or_a_developer(tmp_path: Path):
    # The fuzzer sends thousands of requests a minute; the limits have tests of their own.
    limits = {"CONVEYOR_RATE_LIMIT": "100000/second", "CONVEYOR_HOOK_RATE_LIMIT": "100000/second"}
    with serving(tmp_path, limits) as (url, env):
        repo = git_repo(tmp_path / "repo", "a")
        cli(env, "team", "create", "a")
        cli(env, "project", "create", "a/api", "--repo", f"file://{repo}")
        developer = cli(
            env, "token", "create", "--team", "a", "--name", "dev", "--role", "developer"
        )
        for who, token in (("admin", ADMIN), ("developer", developer)):
            done = schemathesis(url, token, tmp_path / f"report-{who}")
            summary = done.stdout[done.stdout.rfind("SUMMARY") :]
            assert done.returncode == 0, f"as the {who}:\n{done.stdout[-20000:]}\n{done.stderr}"
            assert " passed" in summary and "failure" not in summary, summary
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-5000:]
