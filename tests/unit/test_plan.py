from __future__ import annotations

from conveyor.pipeline.schema import When
from conveyor.pipeline.triggers import EventKind
from tests.conftest import event, plan_for


def test_stages_become_needs_on_all_earlier_jobs():
    plan = plan_for(
        """\
        stages: [build, test, deploy]
        jobs:
          b1: {stage: build, script: x}
          b2: {stage: build, script: x}
          t: {script: x}
          quick: {stage: test, needs: [], script: x}
          d: {stage: deploy, script: x}
        """
    )
    assert plan.job("t").needs == ("b1", "b2")
    assert plan.job("quick").needs == ()
    assert set(plan.job("d").needs) == {"b1", "b2", "t", "quick"}
    names = [j.name for j in plan.jobs]
    assert names.index("b1") < names.index("t") < names.index("d")


def test_matrix_expands_with_gitlab_names_and_env():
    plan = plan_for(
        """\
        jobs:
          test:
            script: x
            matrix: {PY: ["3.11", "3.12"], DB: [sqlite, pg]}
          report: {script: x, needs: [test]}
        """
    )
    names = [j.name for j in plan.jobs if j.base == "test"]
    assert names == [
        "test: [3.11, sqlite]",
        "test: [3.11, pg]",
        "test: [3.12, sqlite]",
        "test: [3.12, pg]",
    ]
    assert plan.job("test: [3.12, pg]").env["DB"] == "pg"
    assert plan.job("test: [3.12, pg]").matrix == {"PY": "3.12", "DB": "pg"}
    assert plan.job("report").needs == tuple(names)


def test_matrix_list_form_concatenates():
    plan = plan_for("jobs:\n  t:\n    script: x\n    matrix: [{A: 1}, {A: [2, 3], B: x}]\n")
    assert [j.name for j in plan.jobs] == ["t: [1]", "t: [2, x]", "t: [3, x]"]


def test_if_excludes_a_job_and_its_dependants_with_reasons():
    plan = plan_for(
        """\
        jobs:
          build: {script: x}
          deploy: {script: x, needs: [build], if: {branch: main}}
          smoke: {script: x, needs: [deploy]}
          notify: {script: x, needs: [{job: deploy, optional: true}]}
        """,
        event(ref="refs/heads/feature"),
    )
    assert [j.name for j in plan.jobs] == ["build", "notify"]
    excluded = {e.name: e.reasons for e in plan.excluded}
    assert excluded["deploy"] == ("if.branch 'feature' matches none of [main]",)
    assert excluded["smoke"] == ("needs 'deploy', which is not in this run",)
    assert plan.job("notify").reasons[-1] == "optional need 'deploy' is not in this run"


def test_defaults_are_inherited_and_overridden():
    plan = plan_for(
        """\
        env: {A: top, B: top}
        defaults:
          timeout: 5m
          retry: 2
          env: {B: defaults}
          before_script: [echo before]
          after_script: [echo after]
        jobs:
          a: {script: main, env: {C: job}}
          b: {script: main, timeout: 30s, retry: {max: 1, when: timeout}, before_script: []}
        """
    )
    a, b = plan.job("a"), plan.job("b")
    assert a.env == {"A": "top", "B": "defaults", "C": "job"}
    assert a.timeout_s == 300 and b.timeout_s == 30
    assert a.retry.max == 2 and len(a.retry.when) == 4
    assert [c.value for c in b.retry.when] == ["timeout"]
    assert a.script == ("echo before", "main") and b.script == ("main",)
    assert a.after_script == ("echo after",)
    assert a.interruptible


def test_deploy_jobs_are_not_interruptible_by_default():
    plan = plan_for("jobs:\n  d: {deploy: {environment: prod, strategy: rolling}, when: manual}\n")
    job = plan.job("d")
    assert not job.interruptible
    assert job.when is When.MANUAL
    assert job.deploy is not None and job.deploy.strategy.rolling is not None


def test_untriggered_plan_has_no_jobs():
    plan = plan_for("on: [tag]\njobs: {a: {script: x}}\n", event(EventKind.PUSH))
    assert not plan.triggered
    assert plan.jobs == ()


def test_ancestors_are_transitive():
    plan = plan_for(
        "jobs:\n  a: {script: x, needs: []}\n  b: {script: x, needs: [a]}\n"
        "  c: {script: x, needs: [b]}\n"
    )
    assert plan.ancestors["c"] == frozenset({"a", "b"})


def test_planned_jobs_round_trip_through_json():
    from conveyor.pipeline.plan import job_from_json, job_to_json

    plan = plan_for(
        """\
        jobs:
          a:
            script: x
            retry: 2
            matrix: {A: [1, 2]}
            cache: {key: {files: [lock]}, paths: [vendor]}
            reports: {junit: "*.xml", coverage: c.xml}
            gates: {coverage_min: 80}
          d:
            deploy:
              environment: prod
              strategy:
                canary:
                  steps: [{weight: 5}, {pause: 10s}, {pause: {}}, {pause: {duration: 1m}}]
        """
    )
    for job in plan.jobs:
        assert job_from_json(job_to_json(job)) == job
    steps = plan.job("d").deploy.strategy.canary.steps
    assert [s.pause for s in steps] == [None, 10.0, "until-promoted", 60.0]


def test_pause_takes_only_duration():
    import pytest

    from conveyor.pipeline.errors import PipelineInvalid

    with pytest.raises(PipelineInvalid, match="a pause takes only `duration`"):
        plan_for(
            "jobs:\n  d: {deploy: {environment: p, strategy: {canary: {steps: [{pause: {for: 1m}}]}}}}\n"
        )
