"""The bodies of the runner protocol (`/api/v1/runners/...`).

register   RegisterRequest ─▶ RegisterReply
request    (long poll)     ─▶ Assignment | 204
heartbeat  Heartbeat       ─▶ HeartbeatReply
log        PUT raw bytes at ?offset= (at most MAX_LOG_CHUNK)
finish     FinishRequest   ─▶ FinishReply
deploy     (start, follow) ─▶ DeploymentProgress
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor.domain.deploy import Phase
from conveyor.domain.failure import FailureClass
from conveyor.domain.status import JobStatus
from conveyor.pipeline.triggers import EventKind

MAX_LOG_CHUNK = 1 << 20
"""The most bytes one log chunk carries (PUT …/log, or the tail sent with finish)."""
MAX_DETAIL = 10_000
"""The longest `detail` an outcome may carry."""


class RunnerRequest(BaseModel):
    """A body a runner sends: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class RunnerReply(BaseModel):
    """A body a runner reads: unknown fields are ignored (a newer coordinator may add
    some)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class RegisterRequest(RunnerRequest):
    token: str
    """A registration token made by `conveyor token create-runner`."""
    name: str = Field(min_length=1, max_length=200)
    labels: list[str] = Field(default_factory=list)


class RegisterReply(RunnerReply):
    id: uuid.UUID
    token: str
    """The runner's own token, for every later request."""


class Assignment(RunnerReply):
    """A job leased to a runner: everything it needs to run it."""

    job_id: uuid.UUID
    fence: int
    """The lease's fencing token: every write about this attempt carries it."""
    attempt: int
    run_id: uuid.UUID
    team: str
    project: str
    service: str
    repo_url: str
    config_path: str
    event: EventKind
    ref: str
    sha: str
    spec: dict[str, Any]
    """The planned job (pipeline.plan.job_to_json)."""
    lease_s: float
    """The lease's length; the runner renews it three times as often."""
    log_offset: int = 0
    """Where this attempt's log continues: earlier attempts' output stays in front."""
    secrets: dict[str, str] = Field(default_factory=dict)
    """The project's secrets, decrypted, for this job only."""
    traceparent: str | None = None
    """The W3C trace context of its claim (None when Conveyor is not traced): the
    runner's attempt and its calls back join that trace."""


class Heartbeat(RunnerRequest):
    fence: int


class HeartbeatReply(RunnerReply):
    canceled: bool
    """True once the job was canceled: the runner stops it and reports the outcome."""


class LogTail(RunnerRequest):
    """The last part of a job's log, sent with its outcome: one request fewer per job."""

    offset: int = Field(ge=0)
    text: str = Field(max_length=MAX_LOG_CHUNK)


class AttemptOutcome(RunnerRequest):
    """What a runner reports when an attempt ends."""

    status: JobStatus
    exit_code: int | None = None
    failure_class: FailureClass | None = None
    detail: str = Field("", max_length=MAX_DETAIL)
    reports: dict[str, Any] = Field(default_factory=dict)
    """Test and coverage reports, gates and artifacts, as the runner summarised them."""


class FinishRequest(AttemptOutcome):
    """An attempt's outcome, with the lease it was run under and the log's last chunk.
    The scheduler takes it as the AttemptOutcome it is."""

    fence: int
    log: LogTail | None = None


class FinishReply(RunnerReply):
    status: JobStatus
    """What the job became: the outcome's status, or `pending` when it is retried."""


class DeploymentProgress(RunnerReply):
    """What a `deploy:` job follows of the deployment it started (a subset of the API's
    deployment body)."""

    number: int
    environment: str
    digest: str
    strategy: str
    phase: Phase
    step: int
    steps: list[str]
    message: str = ""
    awaiting_approval: bool = False
    """It waits for approvals: the job has been handed back and waits `blocked`."""
