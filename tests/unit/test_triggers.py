from __future__ import annotations

import pytest

from conveyor.pipeline.triggers import EventKind, job_condition, pipeline_trigger, skip_ci
from tests.conftest import event, load

PUSH_MAIN = """\
on:
  push:
    branches: [main, "release/*", "!release/old"]
    paths: ["svc/**", "!svc/docs/**"]
  pull_request:
    branches: [main]
  tag: ["v*"]
  schedule:
    - cron: "0 3 * * *"
jobs:
  a: {script: x}
"""


def decide(body, ev):
    return pipeline_trigger(load(body).spec, ev)


def test_push_on_matching_branch_and_path():
    d = decide(PUSH_MAIN, event(changed=("svc/app.py",)))
    assert d.included
    assert d.reasons == (
        "on.push",
        "branch 'main' matches 'main'",
        "paths [svc/**, !svc/docs/**] match changed svc/app.py",
    )


def test_push_on_other_branch_names_the_filter():
    d = decide(PUSH_MAIN, event(ref="refs/heads/feature/x", changed=("svc/a",)))
    assert not d.included
    assert d.reasons[-1] == "branch 'feature/x' matches none of [main, release/*, !release/old]"


def test_negated_branch_pattern_excludes():
    d = decide(PUSH_MAIN, event(ref="refs/heads/release/old"))
    assert not d.included
    assert d.reasons[-1] == "branch 'release/old' is excluded by '!release/old'"


def test_changes_only_in_excluded_paths_do_not_trigger():
    d = decide(PUSH_MAIN, event(changed=("svc/docs/readme.md", "other/x.py")))
    assert not d.included
    assert "match none of the 2 changed files" in d.reasons[-1]


def test_new_branch_without_changed_files_counts_as_all_changed():
    d = decide(PUSH_MAIN, event(changed=None))
    assert d.included
    assert "every path counts as changed" in d.reasons[-1]


def test_skip_ci_in_message():
    d = decide(PUSH_MAIN, event(message="fix typo [skip ci]"))
    assert not d.included
    assert d.reasons == ("the commit message contains [skip ci]",)
    assert skip_ci("[CI SKIP] x")
    assert not skip_ci("skip ci")


def test_tag_push_is_a_tag_event():
    assert decide(PUSH_MAIN, event(ref="refs/tags/v1.2")).included
    d = decide(PUSH_MAIN, event(ref="refs/tags/nightly"))
    assert not d.included
    assert d.reasons[-1] == "tag 'nightly' matches none of [v*]"


def test_pull_request_filters_on_target_branch():
    ok = decide(PUSH_MAIN, event(EventKind.PULL_REQUEST, ref="refs/heads/f", target="main"))
    assert ok.included
    no_target = decide(PUSH_MAIN, event(EventKind.PULL_REQUEST, ref="refs/heads/f"))
    assert not no_target.included
    assert "the event has no target branch" in no_target.reasons[-1]


def test_schedule_and_manual():
    assert decide(PUSH_MAIN, event(EventKind.SCHEDULE)).included
    manual = decide(PUSH_MAIN, event(EventKind.MANUAL))
    assert not manual.included
    assert manual.reasons == ("`on.manual` is false",)


@pytest.mark.parametrize(
    ("kind", "ref", "reason"),
    [
        (EventKind.PUSH, "refs/heads/main", "`on` has no push trigger"),
        (EventKind.PULL_REQUEST, "refs/heads/x", "`on` has no pull_request trigger"),
        (EventKind.TAG, "refs/tags/v1", "`on` has no tag trigger"),
        (EventKind.SCHEDULE, "refs/heads/main", "`on` has no schedule"),
    ],
)
def test_events_not_listed(kind, ref, reason):
    d = decide("on: {manual: true}\njobs: {a: {script: x}}\n", event(kind, ref=ref))
    assert d.reasons == (reason,)


def test_default_on_runs_for_everything():
    body = "jobs: {a: {script: x}}\n"
    for kind in (EventKind.PUSH, EventKind.PULL_REQUEST, EventKind.MANUAL):
        assert decide(body, event(kind, ref="refs/heads/any")).included
    assert decide(body, event(ref="refs/tags/anything")).included
    assert not decide(body, event(EventKind.SCHEDULE)).included


def test_shorthand_list_of_events():
    body = "on: [push, tag]\njobs: {a: {script: x}}\n"
    assert decide(body, event()).included
    assert not decide(body, event(EventKind.MANUAL)).included


def test_job_if_conditions():
    spec = load(
        """\
        jobs:
          a:
            script: x
            if: {branch: main, event: [push, manual], paths: ["src/**"]}
        """
    ).spec
    cond = spec.jobs["a"].if_
    ok = job_condition(cond, event(changed=("src/x",)))
    assert ok.included
    assert ok.reasons == (
        "if.event: 'push' is in [push, manual]",
        "if.branch 'main' matches 'main'",
        "if.paths [src/**] match changed src/x",
    )
    bad_event = job_condition(cond, event(EventKind.SCHEDULE))
    assert bad_event.reasons == ("if.event: 'schedule' is not in [push, manual]",)
    tag_cond = load("jobs: {a: {script: x, if: {tag: 'v*'}}}\n").spec.jobs["a"].if_
    assert job_condition(tag_cond, event(ref="refs/tags/v2")).included
    assert not job_condition(tag_cond, event()).included


def test_many_changed_paths_are_summarised():
    body = "on: {push: {paths: ['**']}}\njobs: {a: {script: x}}\n"
    d = decide(body, event(changed=tuple(f"f{i}" for i in range(5))))
    assert d.reasons[-1].endswith("f0, f1, f2 and 2 more")


def test_bare_branch_ref():
    assert event(ref="main").branch == "main"
    assert event(ref="refs/pull/1/head").branch is None
