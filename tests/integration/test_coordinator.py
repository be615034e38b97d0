"""Real `conveyor serve` and `conveyor runner` processes talking HTTP over loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import git_repo, repo_with
from tests.helpers import (
    ADMIN,
    cli,
    conveyor,
    follow_trigger,
    process,
    two_replicas,
    wait_until,
)

SLOW_PIPELINE = """\
version: 1
service: api
team: a
jobs:
  build: {script: "echo build-ok", needs: []}
  slow: {script: ["echo started", "sleep 3", "echo slow-done"], needs: [build], retry: {max: 1, when: runner_lost}}
"""


def test_serve_runner_trigger_and_follow(server, tmp_path: Path):
    url, env = server
    repo = git_repo(tmp_path / "repo", "a")
    cli(env, "team", "create", "a")
    cli(env, "project", "create", "a/api", "--repo", f"file://{repo}")
    registration = cli(env, "runner-token", "create", "--team", "a")
    cli(env, "secret", "set", "a/api", "DB_PASSWORD", "--value", "hunter2-very-secret")
    runner_args = conveyor("runner", "--token", registration, "--data-dir", str(tmp_path / "r1"))
    with process(runner_args, tmp_path / "runner.log", env) as runner:
        done = follow_trigger(env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "building" in done.stdout and "testing" in done.stdout
        assert "password=***" in done.stdout and "hunter2" not in done.stdout
        assert "cache miss" in done.stdout
        # The same pipeline again: the build job's cache comes back from the coordinator.
        again = follow_trigger(env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "cache hit" in again.stdout
        assert done.stdout.strip().endswith("success")
        runs = json.loads(cli(env, "runs", "a/api", "--json"))
        assert [r["status"] for r in runs["items"]] == ["success", "success"]
        # Another team's token sees nothing of it.
        cli(env, "team", "create", "b")
        other = cli(env, "token", "create", "--team", "b", "--name", "x", "--role", "owner")
        headers = {"Authorization": f"Bearer {other}"}
        run_id = runs["items"][0]["id"]
        assert httpx.get(f"{url}/api/v1/runs/{run_id}", headers=headers).status_code == 404
        assert httpx.get(f"{url}/api/v1/runs", headers=headers).json()["items"] == []
        # `conveyor runners`: the team's runner, online; another team sees none of it.
        (listed,) = json.loads(cli(env, "runners", "--json"))
        assert (listed["team"], listed["online"], listed["running"]) == ("a", True, 0)
        assert listed["name"] in cli(env, "runners")
        assert httpx.get(f"{url}/api/v1/runners", headers=headers).json() == []
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 0
    assert "runner stopped after 4 job(s)" in (tmp_path / "runner.log").read_text()
    again = json.loads(cli(env, "retry", run_id, "--json"))
    assert again["id"] != run_id and again["sha"] == runs["items"][0]["sha"]
    assert [j["status"] for j in again["jobs"]] == ["pending", "created"]


@pytest.mark.slow
def test_a_killed_runner_s_job_is_requeued_and_finished_by_another(server, tmp_path: Path):
    url, env = server
    repo = tmp_path / "repo"
    git_repo(repo, "a")
    (repo / "conveyor.yml").write_text(SLOW_PIPELINE)
    subprocess.run(
        ["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qam", "slow"],
        cwd=repo,
        check=True,
    )
    cli(env, "team", "create", "a")
    cli(env, "project", "create", "a/api", "--repo", f"file://{repo}")
    registration = cli(env, "runner-token", "create")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    run = json.loads(cli(env, "trigger", "a/api", "--ref", "main", "--json"))
    first_args = conveyor(
        "runner", "--token", registration, "--name", "doomed", "--data-dir", str(tmp_path / "r1")
    )
    with process(first_args, tmp_path / "r1.log", env) as doomed:

        def slow_started() -> bool:
            jobs = httpx.get(f"{url}/api/v1/runs/{run['id']}", headers=headers).json()["jobs"]
            slow = next(j for j in jobs if j["name"] == "slow")
            log = httpx.get(f"{url}/api/v1/jobs/{slow['id']}/log", headers=headers).text
            return slow["status"] == "running" and "started" in log

        wait_until(slow_started, 60, "the slow job to start and log")
        doomed.kill()  # kill -9: no goodbye, the lease just stops being renewed
        doomed.wait()
        killed_at = time.monotonic()
    second_args = conveyor(
        "runner", "--token", registration, "--name", "rescuer", "--data-dir", str(tmp_path / "r2")
    )
    with process(second_args, tmp_path / "r2.log", env):

        def finished() -> dict | None:
            body = httpx.get(f"{url}/api/v1/runs/{run['id']}", headers=headers).json()
            return body if body["status"] in ("success", "failed") else None

        final = wait_until(finished, 60, "the run to finish")
    took = time.monotonic() - killed_at
    slow = next(j for j in final["jobs"] if j["name"] == "slow")
    assert final["status"] == "success"
    assert [(a["number"], a["status"], a["failure_class"]) for a in slow["history"]] == [
        (1, "failed", "runner_lost"),
        (2, "success", None),
    ]
    assert took < 30, f"requeue and finish took {took:.1f}s"
    log = httpx.get(f"{url}/api/v1/jobs/{slow['id']}/log", headers=headers).text
    # Both attempts' output, one after the other: the second continued at the first's end.
    assert log.count("attempt 1 of 2") == 1 and log.count("attempt 2 of 2") == 1
    assert log.index("attempt 1 of 2") < log.index("attempt 2 of 2") < log.index("slow-done")


REPLICA_PIPELINE = """\
version: 1
service: api
team: a
jobs:
{jobs}
"""


@pytest.mark.slow
def test_two_replicas_on_postgresql_survive_a_kill_9(postgres_url: str, tmp_path: Path):
    """Two coordinators share one PostgreSQL; runners know both. One coordinator is killed
    mid-run: the run completes, every job ran exactly once, none was lost."""
    ledger = tmp_path / "ledger"
    jobs = "\n".join(
        f"  j{i}: {{script: ['echo $CONVEYOR_JOB_NAME-$CONVEYOR_ATTEMPT >> {ledger}', 'sleep 1'],"
        " needs: []}"
        for i in range(8)
    )
    repo = tmp_path / "repo"
    git_repo(repo, "a")
    (repo / "conveyor.yml").write_text(REPLICA_PIPELINE.format(jobs=jobs))
    subprocess.run(
        ["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qam", "w"],
        cwd=repo,
        check=True,
    )
    with two_replicas(tmp_path, postgres_url, client_of=1) as (urls, env, (replica_a, _)):
        cli(env, "team", "create", "a")
        cli(env, "project", "create", "a/api", "--repo", f"file://{repo}")
        registration = cli(env, "runner-token", "create")
        both = ",".join(urls)
        runner_args = [
            conveyor(
                "runner",
                "--server",
                both,
                "--token",
                registration,
                "--name",
                f"r{i}",
                "--data-dir",
                str(tmp_path / f"r{i}"),
            )
            for i in range(2)
        ]
        with (
            process(runner_args[0], tmp_path / "r0.log", env),
            process(runner_args[1], tmp_path / "r1.log", env),
        ):
            run = json.loads(cli(env, "trigger", "a/api", "--ref", "main", "--json"))
            headers = {"Authorization": f"Bearer {ADMIN}"}

            def some_done() -> bool:
                body = httpx.get(f"{urls[1]}/api/v1/runs/{run['id']}", headers=headers).json()
                return sum(j["status"] == "success" for j in body["jobs"]) >= 2

            wait_until(some_done, 60, "the first jobs")
            replica_a.kill()  # kill -9, mid-run
            replica_a.wait()

            def finished() -> dict | None:
                body = httpx.get(f"{urls[1]}/api/v1/runs/{run['id']}", headers=headers).json()
                return body if body["status"] in ("success", "failed", "canceled") else None

            final = wait_until(finished, 90, "the run to finish on the surviving replica")
    assert final["status"] == "success"
    lines = ledger.read_text().split()
    names = [line.rsplit("-", 1)[0] for line in lines]
    assert sorted(names) == sorted(f"j{i}" for i in range(8)), lines  # each ran exactly once
    for job in final["jobs"]:
        # A lease handed out by the killed replica may have died with it before the runner
        # heard of it: that attempt is runner_lost (it never ran), and the job ran later.
        *lost, last = job["history"]
        assert last["status"] == "success"
        assert all(a["failure_class"] == "runner_lost" for a in lost), job


def test_a_job_made_ready_on_one_replica_wakes_a_runner_waiting_on_another(
    postgres_url: str, tmp_path: Path
):
    """PostgreSQL LISTEN/NOTIFY: with the idle recheck set to a minute, only the NOTIFY
    from replica A can wake the runner that waits on replica B within seconds."""
    repo = git_repo(tmp_path / "repo", "a")
    extra = {"CONVEYOR_RECHECK_SECONDS": "60"}
    with two_replicas(tmp_path, postgres_url, client_of=0, extra=extra) as (urls, env, _):
        cli(env, "team", "create", "a")
        cli(env, "project", "create", "a/api", "--repo", f"file://{repo}")
        registration = cli(env, "runner-token", "create")
        runner_args = conveyor(
            "runner",
            "--server",
            urls[1],
            "--token",
            registration,
            "--data-dir",
            str(tmp_path / "r"),
        )
        with process(runner_args, tmp_path / "r.log", env):
            headers = {"Authorization": f"Bearer {ADMIN}"}

            def polling_b() -> bool:
                stats = httpx.get(f"{urls[1]}/api/v1/stats", headers=headers).json()
                return int(stats["claims"]) >= 1

            wait_until(polling_b, 30, "the runner's long poll on replica B")
            run = json.loads(cli(env, "trigger", "a/api", "--ref", "main", "--json"))

            def build_started() -> dict | None:
                body = httpx.get(f"{urls[0]}/api/v1/runs/{run['id']}", headers=headers).json()
                build = body["jobs"][0]
                return build if build["started_at"] else None

            build = wait_until(build_started, 20, "the build job to start")
    from datetime import datetime

    waited = (
        datetime.fromisoformat(build["started_at"]) - datetime.fromisoformat(build["queued_at"])
    ).total_seconds()
    assert waited < 5, f"the runner on replica B was woken after {waited:.1f}s"


ARTIFACT_PIPELINE = """\
version: 1
service: api
team: a
jobs:
{producers}
  use:
    needs: [{names}]
    script: ["ls -l"]
  after: {{script: "echo after-ok", needs: []}}
"""


@pytest.mark.slow
def test_a_run_canceled_while_a_job_downloads_artifacts_leaves_the_runner_alive(
    server, tmp_path: Path
):
    """Issue 19 §1.1: the coordinator answers a fenced-off download with 409; the runner
    used to die reading the streamed error body (httpx.ResponseNotRead). It drops the
    job and takes the next one."""
    url, env = server
    names = [f"p{i}" for i in range(4)]
    producers = "\n".join(
        f'  {n}: {{script: "head -c 60000000 /dev/urandom > {n}.bin", needs: [], '
        f"artifacts: {{paths: [{n}.bin]}}}}"
        for n in names
    )
    pipeline = ARTIFACT_PIPELINE.format(producers=producers, names=", ".join(names))
    repo = repo_with(tmp_path / "repo", pipeline)
    cli(env, "team", "create", "a")
    cli(env, "project", "create", "a/api", "--repo", f"file://{repo}")
    registration = cli(env, "runner-token", "create")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    args = conveyor("runner", "--token", registration, "--data-dir", str(tmp_path / "r1"))
    with process(args, tmp_path / "runner.log", env) as runner:
        run = json.loads(cli(env, "trigger", "a/api", "--ref", "main", "--json"))

        def use_fetches() -> bool:
            jobs = httpx.get(f"{url}/api/v1/runs/{run['id']}", headers=headers).json()["jobs"]
            use = next(j for j in jobs if j["name"] == "use")
            if use["status"] != "running":
                return False
            log = httpx.get(f"{url}/api/v1/jobs/{use['id']}/log", headers=headers).text
            return "attempt 1" in log

        wait_until(use_fetches, 120, "the job that needs the artifacts to start", every=0.02)
        cli(env, "cancel", run["id"])
        # The runner is alive and takes the next run's jobs.
        again = json.loads(cli(env, "trigger", "a/api", "--ref", "main", "--json"))
        cli(env, "cancel", again["id"])
        (repo / "conveyor.yml").write_text(
            'version: 1\nservice: api\nteam: a\njobs:\n  only: {script: "echo next-ok"}\n'
        )
        subprocess.run(
            ["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qam", "next"],
            cwd=repo,
            check=True,
        )
        done = follow_trigger(env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "next-ok" in done.stdout
        assert runner.poll() is None, (tmp_path / "runner.log").read_text()
    log = (tmp_path / "runner.log").read_text()
    assert "Traceback" not in log and "ResponseNotRead" not in log, log
