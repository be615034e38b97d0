"""The scheduler on real SQLite and PostgreSQL: leases, fencing, retries, fair share."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from conveyor.domain.clock import utcnow
from conveyor.domain.failure import FailureClass
from conveyor.domain.status import JobStatus, RunStatus
from conveyor.protocol.errors import StaleLease
from conveyor.protocol.runner import AttemptOutcome
from conveyor.scheduler.service import Scheduler
from conveyor.storage.database import Database
from conveyor.storage.logs import read_log
from conveyor.storage.runs import derived_status
from conveyor.storage.tables import Job, JobAttempt, Project, RunnerRow, Team
from tests.conftest import event, plan_for
from tests.helpers import wait_until_async

CHAIN = """\
jobs:
  build: {script: x, needs: []}
  test: {script: x, needs: [build], retry: {max: 1, when: [script_failure, runner_lost]}}
  notify: {script: x, needs: [test], when: on_failure}
"""
OK = AttemptOutcome(status=JobStatus.SUCCESS, exit_code=0)
BOOM = AttemptOutcome(
    status=JobStatus.FAILED, exit_code=1, failure_class=FailureClass.SCRIPT_FAILURE
)


async def setup(db: Database, team: str = "payments", runner_team: bool = False):
    async with db.transaction() as session:
        team_row = Team(name=team)
        session.add(team_row)
        await session.flush()
        project = Project(team_id=team_row.id, name=f"{team}-api", repo_url="file:///r")
        runner = RunnerRow(
            name=f"r-{team}", token_hash=f"h-{team}", team_id=team_row.id if runner_team else None
        )
        session.add_all([project, runner])
    return project, runner


async def statuses(db: Database, run_id) -> dict[str, str]:
    async with db.transaction() as session:
        rows = await session.execute(select(Job.name, Job.status).where(Job.run_id == run_id))
        return dict(rows.all())


async def start(
    scheduler: Scheduler,
    project: Project,
    body: str = CHAIN,
    sha: str = "a" * 40,
    ref: str = "refs/heads/main",
):
    plan = plan_for(body, event(ref=ref))
    plan = plan.__class__(
        **{**plan.__dict__, "event": plan.event.__class__(**{**plan.event.__dict__, "sha": sha})}
    )
    return (await scheduler.start_run(project, plan, pipeline="conveyor.yml")).run_id


async def test_jobs_flow_through_the_chain(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    run_id = await start(scheduler, project)
    assert await statuses(database, run_id) == {
        "build": "pending",
        "test": "created",
        "notify": "created",
    }
    first = await scheduler.claim(runner)
    assert first is not None and first.spec["name"] == "build"
    assert (first.fence, first.attempt, first.team, first.sha) == (1, 1, "payments", "a" * 40)
    assert await scheduler.claim(runner) is None
    assert await scheduler.finish(first.job_id, first.fence, OK) is JobStatus.SUCCESS
    second = await scheduler.claim(runner)
    assert second is not None and second.spec["name"] == "test"
    await scheduler.finish(second.job_id, second.fence, OK)
    assert await statuses(database, run_id) == {
        "build": "success",
        "test": "success",
        "notify": "skipped",
    }
    async with database.transaction() as session:
        assert await derived_status(session, run_id) is RunStatus.SUCCESS


async def test_script_failure_is_retried_then_fails_and_on_failure_runs(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    await start(scheduler, project)
    build = await scheduler.claim(runner)
    await scheduler.finish(build.job_id, build.fence, OK)
    test1 = await scheduler.claim(runner)
    assert await scheduler.finish(test1.job_id, test1.fence, BOOM) is JobStatus.PENDING
    test2 = await scheduler.claim(runner)
    assert (test2.job_id, test2.attempt, test2.fence) == (test1.job_id, 2, test1.fence + 1)
    assert await scheduler.finish(test2.job_id, test2.fence, BOOM) is JobStatus.FAILED
    notify = await scheduler.claim(runner)
    assert notify.spec["name"] == "notify"
    async with database.transaction() as session:
        attempts = (
            await session.scalars(
                select(JobAttempt.number).where(JobAttempt.job_id == test1.job_id)
            )
        ).all()
    assert sorted(attempts) == [1, 2]


async def test_lost_lease_requeues_and_fences_out_the_old_runner(database: Database):
    scheduler = Scheduler(database, lease_s=15)
    project, runner = await setup(database)
    await start(scheduler, project)
    build = await scheduler.claim(runner)
    await scheduler.finish(build.job_id, build.fence, OK)
    test = await scheduler.claim(runner)
    assert await scheduler.expire_leases(utcnow()) == 0
    assert await scheduler.expire_leases(utcnow() + timedelta(seconds=16)) == 1
    again = await scheduler.claim(runner)
    assert again.job_id == test.job_id and again.fence == test.fence + 1
    # The zombie runner of the first lease comes back: every write is refused.
    with pytest.raises(StaleLease):
        await scheduler.heartbeat(test.job_id, test.fence)
    with pytest.raises(StaleLease):
        await scheduler.append_log(test.job_id, test.fence, 0, b"late")
    with pytest.raises(StaleLease):
        await scheduler.finish(test.job_id, test.fence, OK)
    assert await scheduler.heartbeat(again.job_id, again.fence) is False
    await scheduler.finish(again.job_id, again.fence, OK)
    async with database.transaction() as session:
        lost = await session.scalar(
            select(JobAttempt.failure_class).where(
                JobAttempt.job_id == test.job_id, JobAttempt.number == 1
            )
        )
    assert lost == FailureClass.RUNNER_LOST.value


async def test_cancel_tells_the_runner_and_keeps_the_attempt(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    run_id = await start(scheduler, project)
    build = await scheduler.claim(runner)
    assert await scheduler.cancel_run(run_id) == 3
    assert await scheduler.heartbeat(build.job_id, build.fence) is True
    await scheduler.append_log(build.job_id, build.fence, 0, b"stopping\n")
    assert (
        await scheduler.finish(build.job_id, build.fence, AttemptOutcome(status=JobStatus.CANCELED))
        is JobStatus.CANCELED
    )
    assert set((await statuses(database, run_id)).values()) == {"canceled"}
    # A canceled run frees its commit: the same commit may run again.
    assert await start(scheduler, project) != run_id


async def test_logs_are_written_once_per_offset(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    await start(scheduler, project)
    job = await scheduler.claim(runner)
    await scheduler.append_log(job.job_id, job.fence, 0, b"hello ")
    await scheduler.append_log(job.job_id, job.fence, 0, b"hello ")  # re-sent
    await scheduler.append_log(job.job_id, job.fence, 6, b"world\n")
    async with database.transaction() as session:
        assert await read_log(session, job.job_id) == b"hello world\n"
        assert await read_log(session, job.job_id, 8) == b"rld\n"
        assert await read_log(session, job.job_id, 12) == b""


async def test_a_flooding_team_does_not_delay_another_team(database: Database):
    scheduler = Scheduler(database)
    flood, runner = await setup(database, "a")
    single, _ = await setup(database, "b")
    many = "jobs:\n" + "".join(f"  j{i}: {{script: x, needs: []}}\n" for i in range(300))
    await start(scheduler, flood, many)
    await asyncio.sleep(0.01)
    await start(scheduler, single, "jobs:\n  only: {script: x}\n")
    claimed = [await scheduler.claim(runner) for _ in range(2)]
    assert "b" in {c.team for c in claimed}


async def test_teams_take_turns_even_when_jobs_finish_at_once(database: Database):
    """Nothing is running when each claim is made: the team served least recently goes
    first, so team B's job runs at the next pass after it is queued."""
    scheduler = Scheduler(database)
    flood, runner = await setup(database, "a")
    single, _ = await setup(database, "b")
    many = "jobs:\n" + "".join(f"  j{i}: {{script: x, needs: []}}\n" for i in range(50))
    await start(scheduler, flood, many)
    for _ in range(3):
        got = await scheduler.claim(runner)
        await scheduler.finish(got.job_id, got.fence, OK)
    await start(scheduler, single, "jobs:\n  only: {script: x}\n")
    assert (await scheduler.claim(runner)).team == "b"


async def test_team_runner_takes_only_its_team_jobs(database: Database):
    scheduler = Scheduler(database)
    other, _ = await setup(database, "other")
    mine, runner = await setup(database, "mine", runner_team=True)
    await start(scheduler, other)
    assert await scheduler.claim(runner) is None
    await start(scheduler, mine)
    assert (await scheduler.claim(runner)).team == "mine"


async def test_concurrent_claims_never_hand_out_a_job_twice(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    body = "jobs:\n" + "".join(f"  j{i}: {{script: x, needs: []}}\n" for i in range(12))
    await start(scheduler, project, body)
    results = await asyncio.gather(*(scheduler.claim(runner) for _ in range(16)))
    claimed = [r.job_id for r in results if r is not None]
    assert len(claimed) == len(set(claimed)) == 12


async def drain(scheduler: Scheduler, runner: RunnerRow, held: dict) -> None:
    """Finish everything still held or pending."""
    for _ in range(100):
        for job_id, fence in list(held.items()):
            try:
                await scheduler.finish(job_id, fence, OK)
            except StaleLease:
                pass
        held.clear()
        got = await scheduler.claim(runner)
        if got is None:
            return
        held[got.job_id] = got.fence


@pytest.mark.parametrize("seed", range(6))
async def test_random_interleavings_keep_the_invariants(database: Database, seed: int):
    """Finish, fail, cancel, lose leases and claim in a random order: no job is ever held
    by two leases, and every run ends."""
    rng = random.Random(seed)
    scheduler = Scheduler(database, lease_s=15)
    project, runner = await setup(database)
    body = """\
jobs:
  a: {script: x, needs: [], retry: {max: 2, when: [script_failure, runner_lost]}}
  b: {script: x, needs: [], retry: 1}
  c: {script: x, needs: [a, b]}
  d: {script: x, needs: [c], when: always}
  e: {script: x, needs: [a], when: on_failure}
"""
    runs = [
        await start(scheduler, project, body, sha=f"{i:040d}", ref=f"refs/heads/b{i}")
        for i in range(3)
    ]
    held: dict = {}
    clock = utcnow()
    for _ in range(200):
        move = rng.choice(["claim", "claim", "finish", "finish", "expire", "cancel"])
        if move == "claim":
            got = await scheduler.claim(runner)
            if got is not None:
                assert got.job_id not in held, "a job was leased twice at once"
                held[got.job_id] = got.fence
        elif move == "finish" and held:
            job_id = rng.choice(list(held))
            outcome = rng.choice([OK, OK, BOOM])
            try:
                await scheduler.finish(job_id, held.pop(job_id), outcome)
            except StaleLease:
                pass
        elif move == "expire":
            clock += timedelta(seconds=rng.choice([0, 20]))
            await scheduler.expire_leases(clock)
            async with database.transaction() as session:
                live = dict(
                    (
                        await session.execute(
                            select(Job.id, Job.fence).where(Job.status == "running")
                        )
                    ).all()
                )
            held = {j: f for j, f in held.items() if live.get(j) == f}
        elif move == "cancel" and rng.random() < 0.1:
            await scheduler.cancel_run(rng.choice(runs))
    await drain(scheduler, runner, held)
    async with database.transaction() as session:
        for run_id in runs:
            status = await derived_status(session, run_id)
            assert status in (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELED)


async def test_a_new_run_on_a_ref_cancels_older_interruptible_jobs(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    body = """\
jobs:
  build: {script: x, needs: []}
  publish: {script: x, needs: [], interruptible: false}
  later: {script: x, needs: [build]}
"""
    old = await start(scheduler, project, body, sha="1" * 40)
    other_branch = await start(scheduler, project, body, sha="2" * 40, ref="refs/heads/dev")
    await scheduler.claim(runner)
    new = await start(scheduler, project, body, sha="3" * 40)
    old_statuses = await statuses(database, old)
    assert old_statuses["build"] == "canceled" and old_statuses["later"] == "canceled"
    assert old_statuses["publish"] in ("pending", "running")
    assert set((await statuses(database, other_branch)).values()) <= {
        "pending",
        "created",
        "running",
    }
    assert (await statuses(database, new))["build"] == "pending"
    async with database.transaction() as session:
        reason = await session.scalar(
            select(Job.reason).where(Job.run_id == old, Job.name == "build")
        )
    assert reason == f"superseded by run {new}"


async def test_play_starts_a_manual_job(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    run_id = await start(scheduler, project, "jobs:\n  ship: {script: x, when: manual}\n")
    assert await statuses(database, run_id) == {"ship": "manual"}
    assert await scheduler.claim(runner) is None
    async with database.transaction() as session:
        ship = await session.scalar(select(Job.id).where(Job.run_id == run_id))
    await scheduler.play(ship)
    assert (await scheduler.claim(runner)).spec["name"] == "ship"


GROUPED = """\
jobs:
  deploy: {{script: x, concurrency: {{group: prod, policy: {policy}}}}}
"""


async def test_ordered_group_runs_one_job_at_a_time_in_order(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    body = GROUPED.format(policy="ordered")
    runs = [
        await start(scheduler, project, body, sha=f"{i:040d}", ref=f"refs/heads/r{i}")
        for i in range(3)
    ]
    first = await scheduler.claim(runner)
    assert first.run_id == runs[0]
    assert await scheduler.claim(runner) is None, "the group is busy"
    await scheduler.finish(first.job_id, first.fence, OK)
    second = await scheduler.claim(runner)
    assert second.run_id == runs[1]
    await scheduler.finish(second.job_id, second.fence, OK)
    assert (await scheduler.claim(runner)).run_id == runs[2]


async def test_newest_wins_skips_superseded_jobs_and_never_starves(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    body = GROUPED.format(policy="newest-wins")
    r0 = await start(scheduler, project, body, sha="0" * 40, ref="refs/heads/a")
    running = await scheduler.claim(runner)
    r1 = await start(scheduler, project, body, sha="1" * 40, ref="refs/heads/b")
    r2 = await start(scheduler, project, body, sha="2" * 40, ref="refs/heads/c")
    assert await statuses(database, r1) == {"deploy": "skipped"}
    assert await statuses(database, r2) == {"deploy": "pending"}
    assert await scheduler.claim(runner) is None
    await scheduler.finish(running.job_id, running.fence, OK)
    assert (await scheduler.claim(runner)).run_id == r2
    assert await statuses(database, r0) == {"deploy": "success"}


async def test_concurrent_claims_respect_a_group(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    body = GROUPED.format(policy="ordered")
    for i in range(4):
        await start(scheduler, project, body, sha=f"{i:040d}", ref=f"refs/heads/r{i}")
    results = await asyncio.gather(*(scheduler.claim(runner) for _ in range(6)))
    assert len([r for r in results if r is not None]) == 1


async def test_jobs_go_only_to_runners_with_their_labels(database: Database):
    scheduler = Scheduler(database)
    project, plain = await setup(database)
    async with database.transaction() as session:
        gpu = RunnerRow(name="gpu", token_hash="h-gpu", labels=["gpu", "linux"])
        session.add(gpu)
    body = """\
defaults: {labels: [linux]}
jobs:
  train: {script: x, needs: [], labels: [gpu, linux]}
  lint: {script: x, needs: []}
"""
    await start(scheduler, project, body)
    assert await scheduler.claim(plain) is None, "the plain runner has neither label"
    first = await scheduler.claim(gpu)
    second = await scheduler.claim(gpu)
    assert {first.spec["name"], second.spec["name"]} == {"train", "lint"}
    assert first.spec["labels"] in (["gpu", "linux"], ["linux"])


async def test_jobs_no_runner_can_take_do_not_hide_the_ones_behind_them(database: Database):
    """Labels are tested in the claim's query: more old jobs than a claim reads (SCAN)
    waiting for a GPU do not keep a plain runner from the plain job queued after them."""
    scheduler = Scheduler(database)
    project, plain = await setup(database)
    gpu_only = "".join(f"  train{i}: {{script: x, needs: [], labels: [gpu]}}\n" for i in range(12))
    await start(scheduler, project, "jobs:\n" + gpu_only, sha="1" * 40)
    await start(
        scheduler,
        project,
        "jobs:\n  lint: {script: x, needs: []}\n",
        sha="2" * 40,
        ref="refs/heads/b",
    )
    got = await scheduler.claim(plain)
    assert got is not None and got.spec["name"] == "lint"
    assert await scheduler.claim(plain) is None, "only GPU jobs are left"


async def test_a_team_quota_caps_its_running_jobs(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    async with database.transaction() as session:
        team = await session.get(Team, project.team_id)
        team.max_running = 1
    await start(
        scheduler, project, "jobs:\n  a: {script: x, needs: []}\n  b: {script: x, needs: []}\n"
    )
    first = await scheduler.claim(runner)
    assert await scheduler.claim(runner) is None, "the quota of 1 is reached"
    await scheduler.finish(first.job_id, first.fence, OK)
    assert await scheduler.claim(runner) is not None


async def _listening(database: Database, count: int) -> bool:
    async with database.transaction() as session:
        found = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
            )
        )
    return int(found or 0) >= count


def test_retry_policy_and_runner_lost_default():
    from conveyor.domain.failure import FailureClass as F
    from conveyor.domain.retry import retry_due

    assert retry_due(F.SCRIPT_FAILURE, 1, 1, [F.SCRIPT_FAILURE])
    assert not retry_due(F.SCRIPT_FAILURE, 2, 1, [F.SCRIPT_FAILURE])
    assert not retry_due(F.TIMEOUT, 1, 3, [F.SCRIPT_FAILURE])
    assert retry_due(F.RUNNER_LOST, 1, 0, [])
    assert retry_due(F.RUNNER_LOST, 2, 0, [])
    assert not retry_due(F.RUNNER_LOST, 3, 0, [])
    assert not retry_due(None, 1, 5, list(F))


async def test_log_tail_is_stored_with_the_outcome(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    await start(scheduler, project)
    job = await scheduler.claim(runner)
    await scheduler.append_log(job.job_id, job.fence, 0, b"first ")
    await scheduler.finish(job.job_id, job.fence, OK, log=(6, b"and last\n"))
    async with database.transaction() as session:
        assert await read_log(session, job.job_id) == b"first and last\n"
    # A stale finish stores nothing: its tail is rolled back with it.
    with pytest.raises(StaleLease):
        await scheduler.finish(job.job_id, job.fence - 1, OK, log=(15, b"late\n"))
    async with database.transaction() as session:
        assert await read_log(session, job.job_id) == b"first and last\n"


async def test_a_claim_is_skipped_until_something_is_announced(database: Database):
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    assert scheduler.may_have_work(runner), "no claim yet: look"
    assert await scheduler.claim(runner) is None
    assert not scheduler.may_have_work(runner), "found nothing, nothing announced since"
    other_kind = RunnerRow(name="gpu", token_hash="h-gpu", labels=["gpu"])
    assert scheduler.may_have_work(other_kind), "another kind of runner still looks"
    await start(scheduler, project)
    assert scheduler.may_have_work(runner), "a new run announced its first job"
    assert (await scheduler.claim(runner)) is not None
    # Without hints (several SQLite processes), every request looks.
    blind = Scheduler(database, hints=False)
    assert await blind.claim(runner) is None
    assert blind.may_have_work(runner)


async def test_a_skip_that_makes_a_job_pending_announces_it(database: Database):
    """`newest-wins` skips an older job; its run's `when: always` job becomes pending, and
    that is announced like any other."""
    scheduler = Scheduler(database)
    project, runner = await setup(database)
    body = """\
jobs:
  deploy: {script: x, needs: [], concurrency: {group: prod, policy: newest-wins}}
  report: {script: x, needs: [deploy], when: always}
"""
    running = await start(scheduler, project, body, sha="0" * 40, ref="refs/heads/a")
    assert (await scheduler.claim(runner)).run_id == running
    older = await start(scheduler, project, body, sha="1" * 40, ref="refs/heads/b")
    waiting = [asyncio.create_task(scheduler.wait(runner, 5.0)) for _ in range(3)]
    await asyncio.sleep(0)
    await start(scheduler, project, body, sha="2" * 40, ref="refs/heads/c")
    assert await statuses(database, older) == {"deploy": "skipped", "report": "pending"}
    await asyncio.sleep(0.01)
    # Two jobs became pending (the new deploy, the older run's report): two wake-ups.
    assert sum(1 for t in waiting if t.done()) == 2
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_replicas_hear_each_other_but_not_themselves(database: Database):
    """PostgreSQL NOTIFY reaches every replica's LISTEN, the sender's too: the sender
    already woke its own requests and ignores the echo."""
    if database.is_sqlite:
        pytest.skip("announcements cross replicas on PostgreSQL only")
    a, b = Scheduler(database), Scheduler(database)
    project, _ = await setup(database)
    listeners = [asyncio.create_task(s.listen()) for s in (a, b)]
    try:
        await wait_until_async(lambda: _listening(database, 2), 10, "both replicas to LISTEN")
        await start(scheduler=a, project=project)
        deadline = asyncio.get_running_loop().time() + 5
        while b.wakeup.generation == 0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # time for an echo to come back to `a`
        assert b.wakeup.generation == 1, "the other replica heard it"
        assert a.wakeup.generation == 1, "the sender woke its own once, not again on the echo"
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)


WITH_MANUAL = """\
jobs:
  build: {script: "true"}
  publish: {script: "true", when: manual}
"""


async def test_a_finished_run_keeps_its_status_for_filters_until_a_manual_job_starts(
    database: Database,
):
    from conveyor.storage import runs
    from conveyor.storage.runs import RunQuery

    project, _ = await setup(database)
    scheduler = Scheduler(database)
    run_id = await start(scheduler, project, WITH_MANUAL)
    async with database.transaction() as session:
        await session.execute(
            Job.__table__.update()
            .where(Job.run_id == run_id, Job.name == "build")
            .values(status=JobStatus.SUCCESS.value)
        )
    async with database.transaction() as session:
        finished = await runs.newly_finished(session, utcnow() - timedelta(days=1))
    assert [(f.run_id, f.status) for f in finished] == [(run_id, RunStatus.SUCCESS)]

    async def listed(status: RunStatus) -> list:  # type: ignore[type-arg]
        query = RunQuery(team_id=project.team_id, project_id=project.id, status=status)
        async with database.transaction() as session:
            return [run.id for run, _, _ in await runs.newest_first(session, query, None, 10)]

    assert await listed(RunStatus.SUCCESS) == [run_id]
    assert await listed(RunStatus.FAILED) == []
    assert await listed(RunStatus.RUNNING) == []
    async with database.transaction() as session:
        publish = await session.scalar(
            select(Job.id).where(Job.run_id == run_id, Job.name == "publish")
        )
    await scheduler.play(publish)
    # Its status is derived again: it may be running now.
    assert await listed(RunStatus.RUNNING) == [run_id]
    assert await listed(RunStatus.SUCCESS) == [run_id]  # a candidate; the caller derives
