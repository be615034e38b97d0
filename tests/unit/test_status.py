from __future__ import annotations

import pytest

from conveyor.domain.status import (
    IllegalTransition,
    JobOutcome,
    JobStatus,
    RunStatus,
    check_transition,
    run_status,
)


def run(*statuses, allow=()):
    return run_status(JobOutcome(s, i in allow) for i, s in enumerate(statuses))


def test_empty_run_is_skipped():
    assert run() is RunStatus.SKIPPED


def test_merging():
    S = JobStatus
    assert run(S.CREATED, S.PENDING) is RunStatus.QUEUED
    assert run(S.SUCCESS, S.PENDING) is RunStatus.RUNNING
    assert run(S.RUNNING, S.FAILED) is RunStatus.RUNNING
    assert run(S.SUCCESS, S.FAILED) is RunStatus.FAILED
    assert run(S.SUCCESS, S.FAILED, allow={1}) is RunStatus.SUCCESS
    assert run(S.FAILED, S.CANCELED) is RunStatus.CANCELED
    assert run(S.SUCCESS, S.SKIPPED, S.MANUAL) is RunStatus.SUCCESS
    assert run(S.SKIPPED, S.MANUAL) is RunStatus.SKIPPED


def test_transitions_are_guarded():
    check_transition(JobStatus.CREATED, JobStatus.PENDING)
    check_transition(JobStatus.RUNNING, JobStatus.PENDING)
    with pytest.raises(IllegalTransition, match="from success to running"):
        check_transition(JobStatus.SUCCESS, JobStatus.RUNNING)
    assert JobStatus.SKIPPED.is_final and not JobStatus.MANUAL.is_final
