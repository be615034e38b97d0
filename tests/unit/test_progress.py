from __future__ import annotations

from conveyor.domain.status import JobStatus as S
from conveyor.pipeline.progress import Action, next_action
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
    assert decide("test", {"build": S.RUNNING}).action is Action.WAIT


def test_runs_after_success():
    assert decide("test", {"build": S.SUCCESS}).action is Action.RUN


def test_failure_upstream_skips_on_success_jobs_transitively():
    statuses = {"build": S.FAILED, "test": S.SKIPPED}
    d = decide("ship", statuses)
    assert d.action is Action.SKIP
    assert d.reason == "'build' failed"


def test_on_failure_runs_only_after_a_failure_upstream():
    assert decide("alert", {"build": S.FAILED, "test": S.SKIPPED}).action is Action.RUN
    d = decide("alert", {"build": S.SUCCESS, "test": S.SUCCESS})
    assert d.action is Action.SKIP
    assert d.reason == "when: on_failure, and nothing upstream failed"


def test_always_runs_whatever_happened():
    assert decide("cleanup", {"build": S.FAILED, "test": S.SKIPPED}).action is Action.RUN


def test_allowed_failure_does_not_count():
    d = decide("test", {"build": S.FAILED}, allow={"build": True})
    assert d.action is Action.RUN


def test_manual_waits_for_a_person_unless_played():
    ok = {"build": S.SUCCESS, "test": S.SUCCESS}
    assert decide("ship", ok).action is Action.MANUAL
    assert decide("ship", ok, played=True).action is Action.RUN


def test_canceled_need_skips():
    assert decide("test", {"build": S.CANCELED}).action is Action.SKIP


def test_need_that_did_not_run_skips():
    d = decide("test", {"build": S.MANUAL})
    assert d.action is Action.SKIP
    assert d.reason == "needs 'build', which did not run"
