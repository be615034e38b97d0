"""The values the runner protocol carries: a leased job (Assignment), an attempt's outcome
(Outcome), and the error for a write from a lease that is no longer valid (StaleLease)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from conveyor.domain.failure import FailureClass
from conveyor.domain.status import JobStatus


class StaleLease(Exception):
    """A runner wrote with a fencing token that is no longer the job's: its lease was
    lost and the job was requeued or finished. Answered with 409."""


class NotYours(Exception):
    """A runner wrote to a job that does not exist or was never leased to it. Answered
    with 404, like any object outside the caller's reach."""


@dataclass(frozen=True)
class Assignment:
    """A job leased to a runner: everything it needs to run it."""

    job_id: uuid.UUID
    fence: int
    attempt: int
    run_id: uuid.UUID
    team: str
    project: str
    service: str
    repo_url: str
    config_path: str
    event: str
    ref: str
    sha: str
    spec: dict[str, Any]
    lease_s: float
    log_offset: int = 0
    """Where this attempt's log continues: earlier attempts' output stays in front."""
    secrets: dict[str, str] = field(default_factory=dict)
    """The project's secrets, decrypted, for this job only."""


@dataclass(frozen=True)
class Outcome:
    """What a runner reports when an attempt ends."""

    status: JobStatus
    exit_code: int | None = None
    failure_class: FailureClass | None = None
    detail: str = ""
    reports: dict[str, Any] = field(default_factory=dict)
