"""Request and response bodies of the user-facing API (`/api/v1`): the server answers
with them, the services build them, the CLI parses answers into them, so that mypy
catches a drift between server and client. The runner protocol's bodies are in
conveyor.protocol.runner."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic.config import JsonDict, JsonValue
from pydantic.json_schema import SkipJsonSchema

from conveyor.domain import events as event_types
from conveyor.domain.deploy import QueuePolicy
from conveyor.domain.roles import Role
from conveyor.protocol import patterns
from conveyor.vcs import check_repo_url

DIGEST = r"^sha256:[0-9a-f]{64}$"
"""An artifact's digest."""

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
EnvName = Annotated[str, Field(pattern=NAME, max_length=100)]


def _http_url(value: str) -> str:
    """An http(s) URL with a host that httpx can send to (IDNA included)."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("needs http:// or https:// and a host")
    return value


HttpUrl = Annotated[
    str,
    Field(min_length=1, max_length=2000, json_schema_extra=patterns.documented(patterns.HTTP_URL)),
    AfterValidator(_http_url),
]
"""A URL Conveyor posts to: checked when given, so that no delivery fails for its form."""
RepoUrl = Annotated[
    str,
    Field(min_length=1, max_length=2000, json_schema_extra=patterns.documented(patterns.REPO_URL)),
    AfterValidator(check_repo_url),
]


EVENT_PATTERNS: JsonDict = {"enum": [event_types.ALL, *event_types.TYPES, *event_types.PREFIXES]}
"""What a subscription may ask for: a type, a prefix (`deployment.*`) or `*`."""
ZONES: JsonDict = {"enum": list[JsonValue](patterns.TIMEZONES)}
"""A time zone field's schema: the IANA names this server knows."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeamIn(Body):
    name: str = Field(pattern=NAME, max_length=100)
    max_running: int | None = Field(None, ge=1, le=100_000)


class TeamPatch(Body):
    max_running: int | None = Field(..., ge=1, le=100_000)


class TeamOut(BaseModel):
    id: uuid.UUID
    name: str
    max_running: int | None = None
    cache_hits: int = 0
    cache_misses: int = 0


class TokenIn(Body):
    name: str = Field(min_length=1, max_length=100)
    role: str = Field(pattern="^(viewer|developer|maintainer|owner)$")

    @property
    def parsed_role(self) -> Role:
        return Role.parse(self.role)


class TokenOut(BaseModel):
    id: uuid.UUID
    token: str


class RunnerOut(BaseModel):
    id: uuid.UUID
    name: str
    team: str | None
    """None: a shared runner, which takes every team's jobs."""
    labels: list[str]
    last_seen_at: str
    online: bool
    """Seen within the last RUNNER_ONLINE_S seconds (a runner asks for work at least
    that often)."""
    running: int
    """Jobs it runs now."""


class RunnerTokenIn(Body):
    team: str | None = None


class HostTokenIn(Body):
    """A host token, for a team's hosts or a shared pool's (the path says which)."""

    name: str = Field("hosts", min_length=1, max_length=100)


class HostTokenOut(BaseModel):
    id: uuid.UUID
    name: str
    team: str | None
    pool: str | None
    created_by: str
    created_at: str
    revoked_at: str | None
    token: str | None = None
    """Only in the answer that made it: it is never shown again."""


class HostOut(BaseModel):
    name: str
    team: str | None
    pool: str | None
    address: str
    labels: dict[str, str]
    slots: int | None
    memory: int | None
    router: bool
    state: Literal["up", "draining", "lost"]
    version: str
    seen_at: str
    lease_until: str
    registered_at: str


class StatusTarget(Body):
    """Where commit statuses go: the provider's API and a token that may post them."""

    api_url: HttpUrl
    repository: str = Field(min_length=1, max_length=300)
    token: str = Field(min_length=1, max_length=2000)


class ProjectIn(Body):
    team: str
    name: str = Field(pattern=NAME, max_length=100)
    repo_url: RepoUrl
    config_path: str = Field("conveyor.yml", min_length=1, max_length=500)
    provider: Literal["github", "gitlab", "gitea", "bitbucket", "git"] = "git"
    webhook_secret: str | None = Field(None, min_length=16, max_length=500)
    """Given: deliveries must be signed with it. Omitted: one is generated and returned
    once."""
    status: StatusTarget | None = None
    artifact_retention_days: int = Field(30, ge=1, le=3650)
    """Artifacts older than this are collected, unless a recent deployment names them."""
    production: list[EnvName] | None = Field(None, min_length=1, max_length=20)
    """The environments whose deployments DORA counts; omitted: `production` and `prod`."""


class ProjectPatch(Body):
    """The fields given change; the others stay (at least one is given)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    # Not nullable: a field left out is left as it is; null is refused, not read as that.
    artifact_retention_days: Annotated[int, Field(ge=1, le=3650)] | SkipJsonSchema[None] = None
    production: (
        Annotated[list[EnvName], Field(min_length=1, max_length=20)] | SkipJsonSchema[None]
    ) = None
    required_teams: (
        Annotated[list[Annotated[str, Field(pattern=NAME, max_length=100)]], Field(max_length=50)]
        | SkipJsonSchema[None]
    ) = None
    """The teams whose required jobs a pull request needs (one commit status each);
    an empty list goes back to what each run's conveyor.yml says."""

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(k for k, v in data.items() if v is None)
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: leave a field out to leave it as it is")
        return data


class ProjectOut(BaseModel):
    id: uuid.UUID
    team: str
    name: str
    repo_url: str
    config_path: str
    provider: str
    hook_path: str
    """Where the provider posts webhooks, relative to the server's URL."""
    webhook_secret: str | None = None
    """Only in the answer that created or rotated it."""
    statuses_to: str | None = None
    artifact_retention_days: int = 30
    production: list[str] = []
    required_teams: list[str] | None = None
    """Set on the server; None: each run's conveyor.yml decides."""
    """The environments whose deployments DORA counts."""


class RotateIn(Body):
    grace_seconds: int = Field(86_400, ge=0, le=30 * 86_400)
    """How long the previous secret keeps verifying."""
    webhook_secret: str | None = Field(None, min_length=16, max_length=500)


class RotateOut(BaseModel):
    webhook_secret: str
    previous_valid_until: str


class DeliveryOut(BaseModel):
    id: uuid.UUID
    provider: str
    delivery_key: str
    event: str
    state: str
    attempts: int
    outcome: list[str]
    runs: list[str]
    received_at: str
    processed_at: str | None


class TriggerIn(Body):
    ref: str = Field(min_length=1, max_length=500)
    sha: str | None = Field(None, pattern="^[0-9a-f]{7,64}$")


class AttemptOut(BaseModel):
    number: int
    status: str
    exit_code: int | None
    failure_class: str | None
    detail: str
    reports: dict[str, Any]


class JobOut(BaseModel):
    id: uuid.UUID
    name: str
    stage: str
    status: str
    attempts: int
    exit_code: int | None
    failure_class: str | None
    reason: str
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    history: list[AttemptOut]


class RunSummary(BaseModel):
    id: uuid.UUID
    team: str
    project: str
    status: str
    event: str
    ref: str
    sha: str
    title: str | None = None
    """The commit message's first line (a pull request's title)."""
    author: str | None = None
    """The commit's author."""
    created_at: str
    finished_at: str | None = None
    """When its last job ended (None while it runs)."""


class RunOut(RunSummary):
    jobs: list[JobOut]


class RunPage(BaseModel):
    items: list[RunSummary]
    next_cursor: str | None


class SecretIn(Body):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)
    value: str = Field(min_length=1, max_length=65536)


class SecretNames(BaseModel):
    names: list[str]


class RunFilter(BaseModel):
    """Query parameters of the run lists."""

    model_config = ConfigDict(extra="forbid")

    status: str | None = None
    ref: str | None = None
    event: str | None = None
    cursor: uuid.UUID | None = None
    limit: int = Field(50, ge=1, le=200)


class ArtifactOut(BaseModel):
    """An artifact with its provenance: which commit, run and job made it."""

    id: uuid.UUID
    team: str
    project: str
    name: str
    digest: str
    size: int
    media_type: str
    sha: str | None
    run_id: uuid.UUID | None
    job_id: uuid.UUID | None
    job_name: str | None
    runner: str | None
    uploaded_by: str
    created_at: str


class DeployIn(Body):
    environment: str = Field(pattern=NAME, max_length=100)
    artifact: str = Field(pattern=DIGEST)
    strategy: Literal["rolling", "blue-green", "canary"] | None = None
    steps: str | None = Field(None, max_length=500)
    """Canary steps, e.g. `10,pause=5s,50,pause,100`."""
    queue_policy: QueuePolicy | None = None
    fix: StrictBool = False
    """It fixes the revision deployed before it, which then counts as a failed change
    (DORA's change failure rate and recovery time)."""
    emergency: str | None = Field(None, min_length=3, max_length=1000)
    """An emergency deploy, with its reason: it passes freezes and approvals and skips
    the rollout's pauses and analyses (never health checks or draining); it needs the
    environment's `emergency_role`, and is audited and announced."""


class PromoteIn(Body):
    full: StrictBool = False


class RollbackIn(Body):
    to: int | None = Field(None, ge=1)
    emergency: str | None = Field(None, min_length=3, max_length=1000)
    """An emergency rollback, with its reason (audited and announced as one; a rollback
    passes freezes, approvals and stop-the-line anyway)."""


class DecisionOut(BaseModel):
    decision: str
    """approve | reject"""
    by: str
    comment: str
    at: str


class ApprovalStateOut(BaseModel):
    required: int
    approver_role: str
    risk: int | None
    reasons: list[str]
    approved_at: str | None
    decisions: list[DecisionOut] = []
    deadline: str | None = None
    """When it is rejected (or approved, as the rules say) without its approvals."""
    on_timeout: str = "reject"


class DeploymentOut(BaseModel):
    id: str
    """For `GET /api/v1/deployments/{id}/analysis`."""
    number: int
    environment: str
    digest: str
    sha: str | None
    kind: str
    strategy: str
    phase: str
    step: int
    steps: list[str]
    pause_reason: str | None
    request: str | None
    requested_by: str | None
    """Who gave the latest command (promote, pause, resume, abort)."""
    started_by: str
    message: str
    """Why it ended (or paused): an abort's reason, an analysis verdict."""
    rollback_of: int | None
    fix: bool
    """Marked as fixing the revision before it (DORA)."""
    committed_at: str | None
    """When its commit was made, when the project's mirror holds it (DORA's lead time)."""
    desired: dict[str, Any]
    observed: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    approval: ApprovalStateOut | None = None
    """What its environment's rules required of it, and the decisions so far."""
    awaiting_approval: bool = False
    """It waits for approvals (`GET /api/v1/approvals`); a pipeline's deploy job waits
    `blocked` meanwhile."""
    emergency: str | None = None
    """An emergency deploy's or rollback's reason."""
    run_id: str | None = None
    """The pipeline run whose `deploy:` job asked for it."""
    job_id: str | None = None
    """That job."""
    held: str | None = None
    """In the answer to an approval that completed it: what of its gate still holds it
    (a freeze window, a wait timer, stop-the-line), if anything."""


class ApprovalItemOut(BaseModel):
    """A deployment in the approvals inbox."""

    id: str
    team: str
    project: str
    environment: str
    number: int
    digest: str
    sha: str | None
    started_by: str
    phase: str
    created_at: str
    approval: ApprovalStateOut
    can_approve: bool
    """The caller may decide it (role, not its own request, not decided already)."""
    why_not: str | None = None


class DecideIn(Body):
    comment: str = Field("", max_length=2000)


class RulesIn(Body):
    """An environment's protection rules (only the fields given are set on the server;
    the others come from the artifact's conveyor.yml `environments:`)."""

    required_approvals: int | None = Field(None, ge=0, le=10)
    approver_role: Literal["viewer", "developer", "maintainer", "owner", "admin"] | None = None
    allowed_branches: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=50
    )
    wait_timer: float | None = Field(None, ge=0, le=30 * 86400)
    """Seconds."""
    approval_timeout: float | None = Field(None, ge=60, le=90 * 86400)
    """Seconds."""
    on_timeout: Literal["reject", "approve"] | None = None
    auto_approve_below: int | None = Field(None, ge=0, le=100)
    emergency_role: Literal["viewer", "developer", "maintainer", "owner", "admin"] | None = None
    timezone: str | None = Field(None, max_length=64, json_schema_extra=ZONES)


class ProtectionOut(BaseModel):
    environment: str
    server: dict[str, Any]
    """The fields set on the server."""
    effective: dict[str, Any] | None
    """The rules in force for the artifact deployed there now (its conveyor.yml's, with
    the server's winning), or the server's alone before a first deploy."""
    updated_by: str
    updated_at: str


class FreezeIn(Body):
    """A freeze window of the company or of a team."""

    cron: str = Field(max_length=100, json_schema_extra=patterns.documented(patterns.CRON))
    """When it starts, five fields on the wall clock of `timezone`: `0 18 * * 5`."""
    duration: str = Field(
        max_length=20, json_schema_extra=patterns.documented(patterns.duration(60, 31 * 86400))
    )
    """How long, from one minute to 31 days: `90m`, `62h`, `3d`."""
    timezone: str = Field("UTC", max_length=64, json_schema_extra=ZONES)
    action: Literal["queue", "refuse"] = "queue"
    reason: str = Field("", max_length=1000)


class ProjectFreezeIn(FreezeIn):
    """A freeze window over one environment of a project."""

    environment: str = Field(pattern=NAME, max_length=100)


class FreezeOut(BaseModel):
    id: str
    scope: str
    """company, team NAME, or TEAM/PROJECT/ENVIRONMENT."""
    cron: str
    duration_s: int
    timezone: str
    action: str
    reason: str
    created_by: str
    created_at: str
    active_until: str | None
    """When the occurrence in force now ends; None when it is not in force."""
    next_start: str


class StopIn(Body):
    """Turning it on says why (`reason`); turning it off need not."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"on": {"const": True}}, "required": ["on"]},
            "then": {"required": ["reason"], "properties": {"reason": {"minLength": 1}}},
        },
    )

    on: StrictBool
    reason: str = Field("", max_length=1000)


class StopOut(BaseModel):
    on: StrictBool
    reason: str
    changed_by: str
    changed_at: str | None


class InstanceOut(BaseModel):
    revision: int
    digest: str
    slot: str
    role: str
    """stable, canary, or warm (the previous stable, kept for a fast switch back)."""
    port: int
    address: str = "127.0.0.1"
    """Where it listens: its host's address (the coordinator's machine: 127.0.0.1)."""
    state: str
    healthy: bool
    restarts: int


class TrafficOut(BaseModel):
    stable: float
    canary: float


class PinOut(BaseModel):
    digest: str
    reason: str
    pinned_by: str
    created_at: str


class EnvironmentOut(BaseModel):
    team: str
    project: str
    environment: str
    revision: int
    digest: str | None
    url: str
    """Where its traffic goes in: the coordinator's router, or its first router host."""
    preview_url: str
    routers: list[str] = Field(default_factory=list)
    """The addresses of the router hosts that serve it (empty: the coordinator's own
    router does), each on the environment's ports."""
    phase: str
    step: str | None
    traffic: TrafficOut
    instances: list[InstanceOut]
    deployment: DeploymentOut | None
    history: list[DeploymentOut]
    pins: list[PinOut]


class JudgementOut(BaseModel):
    """One metric's verdict with what explains it (analysis.judge.Judgement)."""

    metric: str
    verdict: str
    """pass, fail or inconclusive."""
    reason: str
    method: str
    canary: float | None = None
    stable: float | None = None
    threshold: float | None = None
    samples: dict[str, int] = Field(default_factory=dict)
    log_bayes_factor: float | None = None
    """The sequential test's statistic, ln BF against the canary: a fail needs at least
    ln(1/alpha)."""
    alpha: float | None = None
    unit: str = ""
    """ratio (an error rate: 0.01 is 1 %), ms, bytes, or plain."""
    hosts: int = 0
    """The fleet's hosts whose agents' reports it stands on (0: the coordinator's
    machine)."""
    routers: int = 0
    """The router hosts whose request summaries it stands on (0: the coordinator's own
    HAProxy)."""


class MeasurementOut(BaseModel):
    metric: str
    slot: str
    value: float | None
    samples: int
    failures: int = 0
    start: float
    end: float
    detail: str = ""
    hosts: list[str] = Field(default_factory=list)
    """The hosts (by address) whose agents' reports it stands on."""
    routers: list[str] = Field(default_factory=list)
    """The router hosts (by name) whose request summaries it stands on."""


class EvaluationOut(BaseModel):
    seq: int
    at: str
    elapsed_s: float
    verdict: str
    judgements: list[JudgementOut]
    measurements: list[MeasurementOut]


class AnalysisRunOut(BaseModel):
    key: str
    """step-<i> (a canary step, or a blue-green preview), background, or bake."""
    template: str
    phase: str
    """running, passed, failed, inconclusive, or stopped."""
    reason: str
    duration_s: float | None
    evaluations: int
    failures: dict[str, int]
    ended_by: str | None
    started_at: str
    last_at: str | None
    decided_at: str | None
    latest: list[JudgementOut]
    history: list[EvaluationOut]
    """Its newest evaluations (`?evaluations=N`), or those after `?after=SEQ`."""


class AnalysisOut(BaseModel):
    deployment: DeploymentOut
    runs: list[AnalysisRunOut]


class DoraFigures(BaseModel):
    """DORA's four keys over a window (docs/dora.md), with each one's band."""

    deployments: int
    """Production deploys that succeeded."""
    deploys_per_day: float
    lead_time_seconds: float | None
    """Median commit → production; None when no deploy knows its commit's time."""
    lead_times: int
    changes: int
    """Production deploys that changed production (the failure rate's denominator)."""
    failures: int
    change_failure_rate: float | None
    recovery_seconds: float | None
    """Median failed-deployment recovery time."""
    recoveries: int
    bands: dict[str, str | None]
    """Per key: elite, high, medium or low (the 2023 State of DevOps report)."""
    band: str | None
    """The lowest of the keys' bands."""


class DoraOut(BaseModel):
    team: str
    window_days: float
    start: str
    end: str
    overall: DoraFigures
    services: dict[str, DoraFigures]
    """Per project."""


class SubscriptionIn(Body):
    url: HttpUrl
    """Where the events are posted."""
    events: list[Annotated[str, Field(json_schema_extra=EVENT_PATTERNS)]] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=50
    )
    """Event types (`deployment.succeeded`), prefixes (`deployment.*`) or `*`."""
    format: Literal["standard", "slack"] = "standard"
    """standard: Conveyor's JSON (type, timestamp, data); slack: a Slack `text` body."""
    secret: str | None = Field(None, pattern=r"^whsec_[A-Za-z0-9+/=]{24,200}$")
    """Standard Webhooks' `whsec_…`; omitted: one is generated and shown once."""


class SubscriptionOut(BaseModel):
    id: str
    url: str
    events: list[str]
    format: str
    created_by: str
    created_at: str
    secret: str | None = None
    """Only in the answer that created it."""
    pending: int = 0
    """Deliveries not answered yet (retried with backoff)."""
    sent: int = 0
    failed: int = 0
    """Deliveries given up."""
    last_error: str = ""


class EventOut(BaseModel):
    id: str
    type: str
    subject: str
    created_at: str
    data: dict[str, Any]
    published: bool
    """Acknowledged by the event bus (always False without one)."""


class AuditEntryOut(BaseModel):
    """One audit entry, every field its hash covers (domain.audit.HASHED) and the hashes."""

    seq: int
    id: str
    team: str | None
    at: str
    """UTC, microseconds, `Z`: exactly as hashed."""
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    request_id: str | None
    prev_hash: str
    hash: str


class AuditHeadOut(BaseModel):
    seq: int
    """The chain's last entry (0: none yet)."""
    hash: str


class AuditPage(BaseModel):
    team: str | None
    """None: the company's chain."""
    items: list[AuditEntryOut]
    """Oldest first, numbered after `after`."""
    head: AuditHeadOut
    next: int | None
    """Ask again with `after` = this for the entries that follow (None: this was the last)."""


class RiskFactorOut(BaseModel):
    name: str
    value: str
    """What was found, in words."""
    weight: int
    """The most it adds."""
    contribution: float


class RiskOut(BaseModel):
    environment: str
    artifact: str
    score: int
    """0-100: the sum of the contributions, rounded (docs/policy.md, "Risk score")."""
    at: str
    """The time it was judged for (the timing factor's), UTC."""
    factors: list[RiskFactorOut]
