"""The `analysis` section of conveyor.yml: templates, limits with units, references from
deploy jobs; every error at its line and column."""

from __future__ import annotations

import pytest

from conveyor.deploy.strategy import DeployStrategy
from conveyor.pipeline.analysis import Provider, Unit, parse_limit
from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import parse_pipeline
from tests.conftest import pipeline_text

GOOD = """\
analysis:
  templates:
    http-health:
      interval: 1s
      min_samples: 200
      metrics:
        - {name: error-rate, provider: router, max: 1%, compare: stable, max_increase: 0.5pp}
        - {name: p99, provider: router, quantile: 0.99, max: 300ms, compare: stable, max_ratio: 1.2}
        - {name: rss, provider: process, measure: rss, max: 512MiB}
        - {name: smoke, provider: job, job: smoke-test, max: 0}
        - {name: errors-logged, provider: logs, pattern: "ERROR|Traceback", max: 5}
        - {name: paged, provider: alert}
      failure_limit: 0
      inconclusive_limit: 30
jobs:
  smoke-test: {script: "true"}
  ship:
    deploy:
      environment: production
      strategy:
        canary:
          steps: [{weight: 5}, {analysis: http-health, for: 60s}, {weight: 50}, {analysis: {}}]
          background_analysis: http-health
      bake: {analysis: http-health, for: 10m}
"""


def test_a_full_analysis_section_loads():
    spec = parse_pipeline(pipeline_text(GOOD), "conveyor.yml").spec
    template = spec.analysis.templates["http-health"]
    error_rate, p99, rss, smoke, logged, paged = template.metrics
    assert error_rate.is_error_rate and error_rate.max == (0.01, Unit.FRACTION)
    assert error_rate.max_increase == (0.005, Unit.POINTS)
    assert p99.is_latency and p99.max == (0.3, Unit.SECONDS) and p99.max_ratio == 1.2
    assert rss.max == (512 * 2**20, Unit.BYTES)
    assert (smoke.provider, smoke.job) == (Provider.JOB, "smoke-test")
    assert logged.pattern == "ERROR|Traceback" and paged.provider is Provider.ALERT
    deploy = spec.jobs["ship"].deploy
    assert deploy is not None and deploy.bake is not None
    assert (deploy.bake.analysis, deploy.bake.for_) == ("http-health", 600.0)
    canary = deploy.strategy.canary
    assert canary is not None and canary.background_analysis == "http-health"
    assert (canary.steps[1].analysis, canary.steps[1].for_) == ("http-health", 60.0)


def test_a_deployment_stores_the_named_analysis_step_with_its_duration():
    spec = parse_pipeline(pipeline_text(GOOD), "conveyor.yml").spec
    deploy = spec.jobs["ship"].deploy
    assert deploy is not None
    stored = DeployStrategy.of_pipeline(deploy.strategy).stored()
    assert stored["steps"] == [
        {"weight": 5.0},
        {"analysis": "http-health", "for": 60.0},
        {"weight": 50.0},
        {"analysis": None, "for": None},
    ]
    # What a row stores reads back as the same strategy.
    assert DeployStrategy.load(stored) == DeployStrategy.of_pipeline(deploy.strategy)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1%", (0.01, Unit.FRACTION)),
        ("0.5pp", (0.005, Unit.POINTS)),
        ("250ms", (0.25, Unit.SECONDS)),
        ("2s", (2.0, Unit.SECONDS)),
        ("1GiB", (2.0**30, Unit.BYTES)),
        ("10 MB", (10.0**7, Unit.BYTES)),
        (3, (3.0, Unit.NUMBER)),
    ],
)
def test_limits_carry_their_unit(text: object, value: tuple[float, Unit]):
    assert parse_limit(text) == value


@pytest.mark.parametrize("bad", ["lots", True, [1], "5 parsecs"])
def test_a_limit_without_a_known_unit_is_refused(bad: object):
    with pytest.raises(ValueError, match="expected a number"):
        parse_limit(bad)


def errors(body: str) -> list[str]:
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline(pipeline_text(body), "conveyor.yml")
    return [str(e) for e in caught.value.errors]


def test_a_reference_to_a_missing_template_is_an_error_at_its_place():
    found = errors(
        """\
        analysis:
          templates:
            http-health:
              metrics: [{name: e, max: 1%}]
        jobs:
          ship:
            deploy:
              environment: prod
              strategy:
                canary:
                  steps: [{weight: 5}, {analysis: http-helth, for: 1m}]
                  background_analysis: nope
              bake: {analysis: http-health2}
        """
    )
    assert found == [
        "conveyor.yml:14:43: no analysis template 'http-helth' in `analysis.templates` "
        "(did you mean 'http-health'?)",
        "conveyor.yml:15:32: no analysis template 'nope' in `analysis.templates`",
        "conveyor.yml:16:24: no analysis template 'http-health2' in `analysis.templates` "
        "(did you mean 'http-health'?)",
    ]


def test_a_reference_with_no_templates_at_all():
    found = errors("jobs:\n  ship:\n    deploy: {environment: p, bake: {analysis: health}}\n")
    assert found == [
        "conveyor.yml:6:47: no analysis template 'health' in `analysis.templates` (there are none)"
    ]


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ("{name: e, max: 300ms}", "an error rate's limit is a percentage"),
        ("{name: p, quantile: 0.99, max: 1%}", "a latency's limit is a duration"),
        ("{name: r, provider: process, measure: rss, max: 80%}", "an RSS limit is a size"),
        ("{name: c, provider: process, measure: cpu, max: 1GiB}", "a CPU limit is a percentage"),
        ("{name: e}", "has no condition"),
        ("{name: e, max_ratio: 2}", "add `compare: stable`"),
        ("{name: e, provider: http, url: 'http://x', compare: stable, max_ratio: 2}", "for router"),
        ("{name: e, compare: stable, max_increase: 1%}", "in percentage points"),
        ("{name: q, provider: prometheus}", "needs `query`"),
        ("{name: q, provider: http, max: 1}", "needs `url`"),
        ("{name: q, provider: http, url: 'ftp://x', max: 1}", "should match pattern"),
        ("{name: q, provider: http, url: 'http://x', json_path: '$[[', max: 1}", "not a JSONPath"),
        ("{name: q, provider: logs, pattern: '(', max: 1}", "not a regular expression"),
        ("{name: q, provider: http, url: 'http://x', quantile: 0.9, max: 1}", "`quantile` is for"),
        ("{name: q, provider: job, job: missing, max: 0}", "metric job 'missing' is not a job"),
        ("{name: e, max: lots}", "expected a number"),
        (
            "{name: r, provider: http, url: 'http://x', measure: requests, max: 1}",
            "is not for http",
        ),
        ("{name: r, measure: requests, compare: stable, max_ratio: 2}", "`min`/`max` only"),
    ],
)
def test_a_bad_metric_is_an_error_that_says_why(metric: str, message: str):
    body = f"analysis: {{templates: {{t: {{metrics: [{metric}]}}}}}}\njobs: {{a: {{script: x}}}}\n"
    found = errors(body)
    assert any(message in e for e in found), found
    assert all(e.startswith("conveyor.yml:4:") for e in found), found


def test_metric_names_in_a_template_are_unique():
    found = errors(
        "analysis: {templates: {t: {metrics: [{name: e, max: 1%}, {name: e, max: 2%}]}}}\n"
        "jobs: {a: {script: x}}\n"
    )
    assert found == [
        "conveyor.yml:4:37: analysis.templates.t.metrics: metric names must differ: e appear twice"
    ]


def test_for_goes_with_an_analysis_step_only():
    found = errors(
        "jobs: {a: {deploy: {environment: p, strategy: {canary: {steps: [{weight: 5, for: 1m}]}}}}}\n"
    )
    assert any("`for` goes with an analysis step" in e for e in found), found
