"""Why an attempt failed. Retries are decided by failure class, never blindly."""

from __future__ import annotations

from enum import StrEnum


class FailureClass(StrEnum):
    """The cause of a failed attempt, as named in `retry.when`."""

    SCRIPT_FAILURE = "script_failure"
    """The script exited with a non-zero status."""
    TIMEOUT = "timeout"
    """The job ran past its `timeout` and its process group was killed."""
    RUNNER_LOST = "runner_lost"
    """The runner stopped renewing its lease (server mode) or died."""
    INFRA = "infra"
    """Conveyor could not set the job up: workspace, cache, artifacts, spawning the shell."""
    GATE = "gate"
    """The script passed but a quality gate (coverage, tests) failed. Never retried: rerunning
    the same code gives the same verdict."""
    DEPLOY = "deploy"
    """The job's deployment was refused, aborted or failed. Never retried: an aborted
    rollout is a decision, and its revision may be pinned as bad."""


RETRYABLE_CLASSES: frozenset[FailureClass] = frozenset(
    {
        FailureClass.SCRIPT_FAILURE,
        FailureClass.TIMEOUT,
        FailureClass.RUNNER_LOST,
        FailureClass.INFRA,
    }
)
"""The classes that `retry.when` may name."""
