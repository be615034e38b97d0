"""Every error of a file is reported at once, each at its line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.pipeline.errors import PipelineInvalid
from conveyor.pipeline.loader import load_pipeline, parse_pipeline
from tests.conftest import pipeline_text

BROKEN = """\
version: 1
service: payments-api
team: payments
on:
  push:
    branches: ["main", "release/[abc"]
    pathz: ["src/**"]
  schedule:
    - cron: "61 * * * *"
stages: [build, test]
jobs:
  build:
    stage: biuld
    scirpt: make
  test:
    script: make test
    needs: [build, lint]
    timeout: 10 minutes
    retry: {max: 50}
  test:
    script: again
  a:
    script: a
    needs: [b]
  b:
    script: b
    needs: [a]
  c:
    script: 5
    when: sometimes
    matrix: {PY: []}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline(text, "f.yml")
    return [str(e) for e in caught.value.errors]


def test_every_error_at_once_with_its_place():
    assert errors_of(BROKEN) == [
        "f.yml:6:24: on.push.branches[1]: unclosed '[' in glob 'release/[abc'",
        "f.yml:7:5: unknown key 'pathz' in on.push (did you mean 'paths'?)",
        "f.yml:9:13: on.schedule[0].cron: invalid cron expression '61 * * * *'",
        "f.yml:12:3: a job needs a `script` (or a `deploy`)",
        "f.yml:13:12: stage 'biuld' is not in `stages` (build, test) (did you mean 'build'?)",
        "f.yml:14:5: unknown key 'scirpt' in jobs.build (did you mean 'script'?)",
        "f.yml:17:20: job 'test' needs 'lint', which is not a job in this file",
        "f.yml:18:14: jobs.test.timeout: expected a duration like '30s', '10m' or '1h30m', "
        "got '10 minutes'",
        "f.yml:19:18: jobs.test.retry.max: input should be less than or equal to 10, got 50",
        "f.yml:20:3: duplicate key 'test' (first defined at line 15)",
        "f.yml:24:12: `needs` form a cycle: a → b → a",
        "f.yml:29:13: jobs.c.script: expected a string or a list of strings, got 5",
        "f.yml:30:11: jobs.c.when: input should be 'on_success', 'on_failure', 'always' or "
        "'manual', got 'sometimes'",
        "f.yml:31:13: jobs.c.matrix: matrix variable 'PY' has no values",
    ]


def test_three_job_cycle_is_named_in_order():
    text = pipeline_text(
        """\
        jobs:
          a: {script: x, needs: [c]}
          b: {script: x, needs: [a]}
          c: {script: x, needs: [b]}
        """
    )
    messages = errors_of(text)
    assert len(messages) == 1
    cycle = messages[0].split("cycle: ")[1]
    names = cycle.split(" → ")
    assert names[0] == names[-1] and sorted(names[:-1]) == ["a", "b", "c"]


def test_missing_required_keys():
    assert errors_of("version: 1\njobs:\n  a: {script: x}\n") == [
        "f.yml:1:1: (top level): missing required key 'service'",
        "f.yml:1:1: (top level): missing required key 'team'",
    ]


def test_job_without_script_or_deploy_even_with_other_errors():
    assert errors_of(pipeline_text("jobs:\n  a: {stage: build, scirpt: x}\n")) == [
        "f.yml:5:3: a job needs a `script` (or a `deploy`)",
        "f.yml:5:21: unknown key 'scirpt' in jobs.a (did you mean 'script'?)",
    ]


def test_unknown_top_level_key_suggests():
    text = pipeline_text("jobs:\n  a: {script: x}\nstage: [a]\n")
    assert errors_of(text) == ["f.yml:6:1: unknown key 'stage' (did you mean 'stages'?)"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("jobs: {a: {script: x, needs: a}}", "job 'a' needs itself"),
        ("jobs: {a: {script: x}, b: {script: x, needs: [a, a]}}", "lists 'a' in `needs` twice"),
        ("stages: [a, a]\njobs: {x: {script: x, stage: a}}", "stage 'a' is listed twice"),
        ("stages: [build]\njobs: {x: {script: x}}", "the default stage 'test' is not in"),
        ("on: [push, pushh]\njobs: {a: {script: x}}", "unknown event 'pushh'"),
        ("jobs: {a: {script: x, env: {CONVEYOR_X: 1}}}", "CONVEYOR_ prefix is reserved"),
        ("jobs: {a: {script: x, env: {1BAD: x}}}", "'1BAD' is not a valid environment"),
        ("jobs: {a: {script: x, retry: {when: [gate]}}}", "'gate' failures are never retried"),
        ("jobs: {a: {script: x, if: {branch: ''}}}", "empty pattern"),
        ("jobs: {a: {script: x, if: {branch: 'a***'}}}", "use '**'"),
        ("jobs: {a: {script: x, if: {branch: 'a}'}}}", "unbalanced '}'"),
        ("jobs: {a: {script: x, if: {branch: '{a,b'}}}", "unclosed '{'"),
        ("on: {schedule: [{cron: '* * *'}]}\njobs: {a: {script: x}}", "must have 5 fields"),
        ("jobs: {a: {script: x, gates: {coverage_min: 101}}}", "less than or equal to 100"),
        ("jobs: {a: {deploy: {environment: prod, strategy: canary}}}", "needs steps"),
        (
            "jobs: {a: {deploy: {environment: p, strategy: {rolling: {}, canary: {}}}}}",
            "exactly one strategy",
        ),
        (
            "jobs: {a: {deploy: {environment: p, strategy: {canary: {steps: [{weight: 5, pause: 1}]}}}}}",
            "exactly one of: weight, pause, analysis",
        ),
        (
            "jobs: {a: {deploy: {environment: p, strategy: {rolling: {max_surge: 150%}}}}}",
            "a count or a percentage",
        ),
        ("jobs: {a: {script: x}}\nruntime: {command: serve}", "must listen on $PORT"),
        ("jobs: {'bad:name': {script: x}}", "bad name"),
        ("jobs: {a: {script: x, matrix: {'1X': [a]}}}", "not a valid environment name"),
        ("jobs: {a: {script: x, matrix: [{}]}}", "at least one variable"),
        ("jobs: {}", "jobs: a pipeline needs at least one job"),
    ],
)
def test_single_errors(body, message):
    messages = errors_of(pipeline_text(body + "\n"))
    assert any(message in m for m in messages), messages


def test_unsupported_version():
    text = "version: 2\nservice: s\nteam: t\njobs: {a: {script: x}}\n"
    assert errors_of(text) == [
        "f.yml:1:10: version: unsupported version 2; this Conveyor reads version 1"
    ]


def test_matrix_over_the_limit():
    values = ", ".join(str(i) for i in range(17))
    body = f"jobs: {{a: {{script: x, matrix: {{A: [{values}], B: [{values}]}}}}}}\n"
    assert any("256" in m for m in errors_of(pipeline_text(body)))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "not UTF-8 text"),
        (b"- a\n- b\n", "expected a mapping, got list"),
        (b"", "expected a mapping, got an empty file"),
        (b"a: [", "YAML syntax error"),
        (b"x" * 1_000_001, "larger than"),
    ],
)
def test_not_a_pipeline(raw, message):
    with pytest.raises(PipelineInvalid) as caught:
        parse_pipeline(raw, "f.yml")
    assert message in str(caught.value)


def test_unreadable_file(tmp_path: Path):
    with pytest.raises(PipelineInvalid, match="cannot read"):
        load_pipeline(tmp_path / "missing.yml")


def test_templates_are_not_jobs_and_feed_anchors():
    text = pipeline_text(
        """\
        jobs:
          .base: &base
            timeout: 5m
            env: {A: "1"}
          a:
            <<: *base
            script: echo a
        """
    )
    spec = parse_pipeline(text, "f.yml").spec
    assert list(spec.jobs) == ["a"]
    assert spec.jobs["a"].timeout == 300
    assert spec.jobs["a"].env == {"A": "1"}


def test_placement_rules_are_reported_at_their_line_and_column():
    body = (
        "jobs: {a: {script: x}}\n"
        "runtime:\n"
        "  command: serve --port $PORT\n"
        "  memory: lots\n"
        "  placement:\n"
        "    labels: {role: web}\n"
        "    max_per_host: 0\n"
    )
    text = pipeline_text(body)
    line = text.splitlines().index("runtime:") + 1
    assert errors_of(text) == [
        f"f.yml:{line + 2}:11: runtime.memory: expected a size like '512MiB' or '4GiB', got 'lots'",
        f"f.yml:{line + 5}:19: runtime.placement.max_per_host: input should be greater than "
        "or equal to 1, got 0",
    ]
    twice = body.replace("max_per_host: 0", "spread: [zone, zone]").replace("lots", "512MiB")
    assert errors_of(pipeline_text(twice)) == [
        f"f.yml:{line + 4}:5: runtime.placement: spread names zone more than once"
    ]
