from __future__ import annotations

from conveyor.domain.status import JobStatus as S
from conveyor.pipeline.progress import JobAction, next_action, settle
from tests.conftest import plan_for

PLAN = plan_for(
    """\
    jobs:
      build: {script: x, needs: []}
      test: {script: x, needs: [build]}
      cleanup: {script: x, needs: [test], when: always}
      alert: {script: x, needs: [test], when: on_failure}
      ship: {script: x, needs: [test], when: manual}
    """
)


def decide(name, statuses, allow=None, played=False):
    full = {j.name: S.CREATED for j in PLAN.jobs} | statuses
    job = PLAN.job(name)
    return next_action(job, PLAN.ancestors[name], full, allow or {}, played=played)


def test_waits_for_unfinished_needs():
    assert decide("test", {"build": S.RUNNING}).action is JobAction.WAIT


def test_runs_after_success():
    assert decide("test", {"build": S.SUCCESS}).action is JobAction.RUN


def test_failure_upstream_skips_on_success_jobs_transitively():
    statuses = {"build": S.FAILED, "test": S.SKIPPED}
    d = decide("ship", statuses)
    assert d.action is JobAction.SKIP
    assert d.reason == "'build' failed"


def test_on_failure_runs_only_after_a_failure_upstream():
    assert decide("alert", {"build": S.FAILED, "test": S.SKIPPED}).action is JobAction.RUN
    d = decide("alert", {"build": S.SUCCESS, "test": S.SUCCESS})
    assert d.action is JobAction.SKIP
    assert d.reason == "when: on_failure, and nothing upstream failed"


def test_always_runs_whatever_happened():
    assert decide("cleanup", {"build": S.FAILED, "test": S.SKIPPED}).action is JobAction.RUN


def test_allowed_failure_does_not_count():
    d = decide("test", {"build": S.FAILED}, allow={"build": True})
    assert d.action is JobAction.RUN


def test_manual_waits_for_a_person_unless_played():
    ok = {"build": S.SUCCESS, "test": S.SUCCESS}
    assert decide("ship", ok).action is JobAction.MANUAL
    assert decide("ship", ok, played=True).action is JobAction.RUN


def test_canceled_need_skips():
    assert decide("test", {"build": S.CANCELED}).action is JobAction.SKIP


def test_need_that_did_not_run_skips():
    d = decide("test", {"build": S.MANUAL})
    assert d.action is JobAction.SKIP
    assert d.reason == "needs 'build', which did not run"


CHAIN = """\
jobs:
  build: {script: x, needs: []}
  release: {script: x, needs: [build], when: manual}
  announce: {script: x, needs: [release]}
"""


def _settle(**kwargs):  # type: ignore[no-untyped-def]
    plan = plan_for(CHAIN)
    jobs = {j.name: j for j in plan.jobs}
    statuses = dict.fromkeys(jobs, S.CREATED)
    moves = settle(
        jobs,
        {j.name: j.needs for j in plan.jobs},
        statuses,
        {j.name: j.allow_failure for j in plan.jobs},
        **kwargs,
    )
    return [(m.name, m.status) for m in moves], statuses


def test_settle_cascades_a_parked_manual_job_into_skips():
    statuses = dict.fromkeys(["build", "release", "announce"], S.CREATED)
    statuses["build"] = S.SUCCESS
    plan = plan_for(CHAIN)
    created = {j.name: j for j in plan.jobs if j.name != "build"}
    moves = settle(created, {j.name: j.needs for j in plan.jobs}, statuses, {})
    assert [(m.name, m.status) for m in moves] == [
        ("release", S.MANUAL),
        ("announce", S.SKIPPED),
    ]


def test_settle_makes_only_the_first_job_pending_at_the_start():
    moves, statuses = _settle()
    assert moves == [("build", S.PENDING)]
    assert statuses["release"] is S.CREATED


def test_settle_runs_a_played_manual_job():
    plan = plan_for(CHAIN)
    statuses = {"build": S.SUCCESS, "release": S.CREATED, "announce": S.CREATED}
    created = {j.name: j for j in plan.jobs if j.name != "build"}
    needs = {j.name: j.needs for j in plan.jobs}
    moves = settle(created, needs, statuses, {}, played={"release"})
    assert [(m.name, m.status) for m in moves] == [("release", S.PENDING)]


def test_settle_cancels_every_created_job_of_a_canceled_run():
    moves, statuses = _settle(canceled=True)
    assert moves == [(n, S.CANCELED) for n in ("build", "release", "announce")]
    assert set(statuses.values()) == {S.CANCELED}


def test_settle_skips_a_refused_job_and_what_needs_it():
    moves, _ = _settle(refuse=lambda job: "not here" if job.name == "build" else None)
    assert moves == [
        ("build", S.SKIPPED),
        ("release", S.SKIPPED),
        ("announce", S.SKIPPED),
    ]
