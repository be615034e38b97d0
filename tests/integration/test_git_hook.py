"""End to end: a real `git push` to a bare repository with Conveyor's post-receive hook
starts exactly the pipelines whose path filters match (a monorepo with two services)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.helpers import cli
from tests.intake.conftest import commit, git

SERVICE = """\
version: 1
service: {name}
team: a
on:
  push: {{paths: ["services/{name}/**"]}}
  manual: true
jobs:
  build: {{script: "echo {name}"}}
"""


def _runs(env: dict[str, str], project: str) -> list[dict[str, object]]:
    data = json.loads(cli(env, "runs", project, "--json"))
    return list(data["items"]) if isinstance(data, dict) else list(data)


def _settled(env: dict[str, str], project: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while True:
        found = json.loads(cli(env, "project", "deliveries", project, "--json"))
        if len(found) >= count and all(d["state"] != "received" for d in found):
            return list(found)
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def test_git_push_starts_the_matching_pipelines(server, tmp_path: Path) -> None:
    _, env = server
    bare = tmp_path / "mono.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    git(work, "checkout", "-q", "-b", "main")
    commit(
        work,
        {
            "services/a/conveyor.yml": SERVICE.format(name="a"),
            "services/b/conveyor.yml": SERVICE.format(name="b"),
            "services/a/app.py": "a1\n",
            "services/b/app.py": "b1\n",
        },
        "two services",
    )
    cli(env, "team", "create", "a")
    for name in ("a", "b"):
        created = cli(
            env,
            "project",
            "create",
            f"a/svc-{name}",
            "--repo",
            str(bare),
            "--config-path",
            f"services/{name}/conveyor.yml",
            "--install-hook",
        )
        assert "post-receive hook installed" in created
    assert (bare / "hooks" / "post-receive").stat().st_mode & 0o111
    assert (bare / "conveyor" / "targets.json").stat().st_mode & 0o777 == 0o600

    pushed = subprocess.run(
        ["git", "push", "-q", "origin", "main"], cwd=work, capture_output=True, text=True
    )
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr.count("202 accepted") == 2, pushed.stderr  # one per project
    # The first push of the default branch has nothing to compare with: both start.
    for name in ("a", "b"):
        _settled(env, f"a/svc-{name}", 1)
        assert len(_runs(env, f"a/svc-{name}")) == 1

    # A change to service b only starts b's pipeline.
    commit(work, {"services/b/app.py": "b2\n"}, "b only")
    pushed = subprocess.run(["git", "push", "-q"], cwd=work, capture_output=True, text=True)
    assert pushed.returncode == 0, pushed.stderr
    (latest_a, _) = _settled(env, "a/svc-a", 2)[:2]
    (latest_b, _) = _settled(env, "a/svc-b", 2)[:2]
    assert latest_a["runs"] == [] and "not triggered" in str(latest_a["outcome"])
    assert len(latest_b["runs"]) == 1
    assert len(_runs(env, "a/svc-a")) == 1 and len(_runs(env, "a/svc-b")) == 2

    # A manual trigger repeated with the same Idempotency-Key is one run.
    args = ("trigger", "a/svc-b", "--ref", "main", "--idempotency-key", "rel-1", "--json")
    first, again = json.loads(cli(env, *args)), json.loads(cli(env, *args))
    assert first["id"] == again["id"] and first["event"] == "manual"
    assert len(_runs(env, "a/svc-b")) == 3

    # A new branch touching a: compared with its merge-base on main, so only a starts.
    git(work, "checkout", "-q", "-b", "feature")
    commit(work, {"services/a/app.py": "a2\n"}, "a on a branch")
    pushed = subprocess.run(
        ["git", "push", "-q", "origin", "feature"], cwd=work, capture_output=True, text=True
    )
    assert pushed.returncode == 0, pushed.stderr
    newest_a = _settled(env, "a/svc-a", 3)[0]
    newest_b = _settled(env, "a/svc-b", 3)[0]
    # The hook diffed the branch against its merge-base: one file, not "everything".
    assert len(newest_a["runs"]) == 1
    assert "1 changed files listed in the payload" in str(newest_a["outcome"])
    assert newest_b["runs"] == []
    # Pushing the same thing again changes nothing; deleting the branch starts nothing.
    pushed = subprocess.run(
        ["git", "push", "-q", "origin", ":feature"], cwd=work, capture_output=True, text=True
    )
    assert pushed.returncode == 0, pushed.stderr
    deleted = _settled(env, "a/svc-a", 4)[0]
    assert deleted["outcome"] == ["refs/heads/feature was deleted"]
    assert len(_runs(env, "a/svc-a")) == 2 and len(_runs(env, "a/svc-b")) == 3
