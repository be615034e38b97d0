"""`conveyor risk` and `conveyor audit list` as a user types them, against a real serve."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.test_risk import SERVICE
from tests.helpers import cli


def test_risk_and_the_audit_list_on_the_command_line(server, tmp_path: Path):
    _, env = server
    cli(env, "team", "create", "a")
    cli(env, "project", "create", "a/api", "--repo", "file:///nowhere")
    build = tmp_path / "build"
    build.mkdir()
    (build / "conveyor.yml").write_text(SERVICE)
    digest = cli(env, "artifacts", "upload", "a/api", str(build)).splitlines()[-1]
    assert digest.startswith("sha256:")
    shown = cli(env, "risk", "a/api", "--env", "production", "--artifact", digest)
    assert shown.startswith("risk ") and f"of {digest[:19]}… to production" in shown
    assert "pre_deploy runs migrations" in shown and "unknown (no deployed" in shown
    data = json.loads(cli(env, "risk", "a/api", "-e", "production", "--artifact", digest, "--json"))
    assert shown.startswith(f"risk {data['score']} ")
    listed = cli(env, "audit", "list", "a")
    assert "project.create" in listed and "a/api" in listed
    company = cli(env, "audit", "list", "--limit", "1")
    assert "team.create" in company


def test_protect_shows_durations_as_they_are_written(server):
    """Issue 19 §1.8: `protect` printed `approval_timeout 259200.0`."""
    _, env = server
    cli(env, "team", "create", "a")
    cli(env, "project", "create", "a/api", "--repo", "file:///nowhere")
    shown = cli(
        env,
        "protect",
        "a/api",
        "--env",
        "production",
        "--approval-timeout",
        "3d",
        "--wait-timer",
        "90s",
        "--allowed-branch",
        "main",
        "--allowed-branch",
        "release/*",
    )
    assert "259200" not in shown and "3d" in shown and "90s" in shown, shown
    assert "main, release/*" in shown, shown
