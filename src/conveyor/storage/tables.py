"""The tables. Identifiers are UUIDv7 (docs/ids.md); every table holding team data has a
`team_id`; timestamps are timezone-aware UTC."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from conveyor.domain.clock import utcnow
from conveyor.domain.delivery import DeliveryState
from conveyor.domain.deploy import InstanceState, Phase, QueuePolicy
from conveyor.domain.status import JobStatus
from conveyor.ids import new_id

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy's documented class attribute
        datetime: DateTime(timezone=True),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    max_running: Mapped[int | None] = mapped_column(default=None)
    """The team's quota: at most this many of its jobs run at once (None: no quota)."""
    cache_hits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cache_misses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("team_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    repo_url: Mapped[str] = mapped_column(Text)
    config_path: Mapped[str] = mapped_column(String(500), default="conveyor.yml")
    provider: Mapped[str] = mapped_column(String(20), default="git", server_default="git")
    """Where pushes come from: github, gitlab, gitea, bitbucket or git (a bare repo)."""
    hook_secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    """The webhook secret, sealed (storage.secrets.SecretBox.seal_blob)."""
    hook_secret_old: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    hook_secret_old_until: Mapped[datetime | None] = mapped_column(default=None)
    """After a rotation the old secret verifies too, until this moment."""
    status_api: Mapped[str | None] = mapped_column(Text, default=None)
    """The provider's API base URL for commit statuses; None: statuses are not sent."""
    status_repo: Mapped[str | None] = mapped_column(String(300), default=None)
    """owner/repo (GitHub, Gitea), a project id or path (GitLab), workspace/slug
    (Bitbucket)."""
    status_token: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    artifact_retention_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    """Artifacts older than this are collected, unless a recent deployment names them."""
    production: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    """The environments whose deployments count as production (DORA); None: the ones
    named `production` or `prod`."""
    required_teams: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    """The teams whose required jobs a pull request needs (one commit status each); None:
    what each run's conveyor.yml says (`merge.required_teams`, else its required jobs')."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """A pipeline run. Its status is derived from its jobs; once it has finished, that
    status is also kept (`final_status`), so that lists filter by it in SQL."""

    __tablename__ = "runs"
    __table_args__ = (
        Index(None, "team_id", "project_id", "created_at"),
        Index(None, "finished_at", "created_at"),
        Index(None, "project_id", "final_status"),
        UniqueConstraint("dedupe_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(20))
    ref: Mapped[str] = mapped_column(String(500))
    sha: Mapped[str] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(300), default=None)
    """The commit message's first line (a pull request's: its title), as people know it."""
    author: Mapped[str | None] = mapped_column(String(200), default=None)
    """The commit's author's name."""
    dedupe_key: Mapped[uuid.UUID | None] = mapped_column(default=None)
    """UUIDv5 of [project, event, ref, sha, pipeline] (docs/ids.md); NULL once canceled,
    so that a canceled run does not block a new one for the same commit."""
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    status_reported: Mapped[str | None] = mapped_column(String(60), default=None)
    """The commit status last queued for the provider ("<run>|<required>"), for projects
    that report statuses (notify.statuses)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    received_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the webhook delivery that started it arrived (a trigger: its creation)."""
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    """When Conveyor saw every job of it final (storage.runs.newly_finished)."""
    traceparent: Mapped[str | None] = mapped_column(String(64), default=None)
    """The W3C trace context it was started in (None when not traced): its jobs' claims
    and attempts join that trace (observability.tracing)."""
    required_teams: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    """The teams its conveyor.yml requires for a merge (Plan.required_teams)."""
    final_status: Mapped[str | None] = mapped_column(String(20), default=None)
    """Its status when it was seen finished (storage.runs.newly_finished); None while it
    runs, and again once a manual job of it is started."""


class Job(Base):
    """One planned job of a run. Every status change is a guarded UPDATE (storage.jobs)."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("run_id", "name"),
        Index(None, "status", "team_id", "queued_at"),
        Index(None, "run_id", "status"),
        Index(None, "team_id", "started_at"),
        Index(None, "team_id", "concurrency_group", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.CREATED.value)
    spec: Mapped[dict[str, Any]] = mapped_column()
    """The PlannedJob, as JSON: what a runner needs to execute the job."""
    concurrency_group: Mapped[str | None] = mapped_column(String(200), default=None)
    """`concurrency.group`: at most one job of the team's group runs at a time."""
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    fence: Mapped[int] = mapped_column(Integer, default=0)
    """Raised on every lease grant: a runner's late write with an older fence is refused."""
    runner_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    exit_code: Mapped[int | None] = mapped_column(default=None)
    failure_class: Mapped[str | None] = mapped_column(String(20), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    queued_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobAttempt(Base):
    """One attempt of a job: every retry is recorded."""

    __tablename__ = "job_attempts"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    exit_code: Mapped[int | None] = mapped_column(default=None)
    failure_class: Mapped[str | None] = mapped_column(String(20), default=None)
    detail: Mapped[str] = mapped_column(Text, default="")
    reports: Mapped[dict[str, Any]] = mapped_column(default=dict)
    runner_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token for the API. `team_id` NULL with role `admin` is the admin token.
    Only the sha256 of the token is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), default=None
    )
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunnerToken(Base):
    """A registration token: exchanged by `conveyor runner` for a runner token. Team-scoped
    runners take only that team's jobs; shared ones (team NULL) take any team's."""

    __tablename__ = "runner_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), default=None
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunnerRow(Base):
    """A registered runner."""

    __tablename__ = "runners"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), default=None
    )
    name: Mapped[str] = mapped_column(String(200))
    labels: Mapped[list[Any]] = mapped_column(default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LogChunk(Base):
    """A piece of a job's log, keyed by its byte offset: a re-sent chunk is written once."""

    __tablename__ = "log_chunks"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    offset: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Secret(Base):
    """A project's secret, encrypted with AES-GCM (storage.secrets). Never returned by the
    API; handed only to that project's jobs."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CacheEntry(Base):
    """A job cache archive, per team and key: teams never share caches. Evicted least
    recently used first when the team's quota is exceeded (storage.caches)."""

    __tablename__ = "caches"

    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """A webhook delivery in the durable inbox: stored verified and raw before it is
    acknowledged, translated into runs afterwards. The unique key makes a redelivery a
    no-op (docs/ids.md)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("project_id", "provider", "delivery_key"),
        Index(None, "state", "not_before"),
        Index(None, "project_id", "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(20))
    delivery_key: Mapped[str] = mapped_column(String(300))
    event: Mapped[str] = mapped_column(String(200))
    headers: Mapped[dict[str, Any]] = mapped_column()
    body: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.RECEIVED.value)
    """received → done | failed; `not_before` is when a worker may (re)take it."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[list[Any]] = mapped_column(default=list)
    runs: Mapped[list[Any]] = mapped_column(default=list)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    traceparent: Mapped[str | None] = mapped_column(String(64), default=None)
    """The trace context of the request that stored it (None when not traced)."""


class IdempotencyRecord(Base):
    """A POST made with an `Idempotency-Key`: its request fingerprint and, once answered,
    its response (the IETF draft's semantics; docs/ids.md)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "method", "route", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(10))
    route: Mapped[str] = mapped_column(String(500))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(default=None)
    """None while the first request is still being answered."""
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduleFire(Base):
    """One firing of a schedule entry: the primary key lets exactly one replica fire
    each slot."""

    __tablename__ = "schedule_fires"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    entry: Mapped[str] = mapped_column(String(300), primary_key=True)
    slot: Mapped[datetime] = mapped_column(primary_key=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StatusReport(Base):
    """The outbox of commit statuses to send to the provider, retried with backoff."""

    __tablename__ = "status_outbox"
    __table_args__ = (Index(None, "sent_at", "next_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    sha: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(500))
    context: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    """pending | running | success | failure | canceled (mapped per provider)."""
    description: Mapped[str] = mapped_column(String(140), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """A lifecycle event (docs/events.md), written in the transaction of the change it
    tells of: the outbox that webhook subscriptions and the event bus are served from."""

    __tablename__ = "events"
    __table_args__ = (
        Index(None, "fanned_out", "created_at"),
        Index(None, "published_at", "bus_next_at"),
        Index(None, "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    """UUIDv7: the id every copy of the event carries (`webhook-id`, `Nats-Msg-Id`)."""
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE")
    )
    """None for an event of the team's fleet (`host.*`): it goes to every project of the
    team whose subscriptions ask for it."""
    type: Mapped[str] = mapped_column(String(60))
    """run.queued, run.finished, deployment.started, … (domain.events.TYPES)."""
    subject: Mapped[str] = mapped_column(String(200))
    """What it is about: `runs/<id>`, `deployments/<id>` or `hosts/<id>`."""
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fanned_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Its deliveries to the matching subscriptions are queued."""
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    """Acknowledged by the event bus (None: not yet, or no bus)."""
    bus_next_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When the bus publisher may take it (a claim pushes it forward; so does a failure)."""
    bus_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Subscription(Base):
    """A project's webhook subscription: its events are posted to `url`, signed the
    Standard Webhooks way with its secret."""

    __tablename__ = "subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]] = mapped_column(JSON)
    """Event types, or prefixes ending in `.*` (`deployment.*`), or `*` for all."""
    format: Mapped[str] = mapped_column(String(20), default="standard")
    """standard (Conveyor's JSON) | slack (a Slack-compatible `text` body)."""
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    """The signing secret (`whsec_…`), sealed with the project's key."""
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventDelivery(Base):
    """One event to one subscription: the webhook outbox, retried with backoff."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        Index(None, "sent_at", "next_at"),
        UniqueConstraint("event_id", "subscription_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    """Answered 2xx, or given up (then `last_error` says so)."""
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    """An immutable artifact: metadata and provenance of a blob in the blob store
    (artifacts.blobs). Identical content is one blob, however many rows name it."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("project_id", "name", "digest"),
        Index(None, "digest"),
        Index(None, "project_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    run_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    job_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    job_name: Mapped[str | None] = mapped_column(String(300), default=None)
    sha: Mapped[str | None] = mapped_column(String(64), default=None)
    """The commit the artifact was built from, when known."""
    runner: Mapped[str | None] = mapped_column(String(200), default=None)
    uploaded_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArtifactPublication(Base):
    """A job of a run published an artifact. Identical content is recorded once
    (`Artifact`, with its first provenance); every run that publishes it again gets a
    publication of its own, so that its jobs find it (a commit run again deploys)."""

    __tablename__ = "artifact_publications"
    __table_args__ = (Index(None, "run_id", "job_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    artifact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[uuid.UUID] = mapped_column()
    job_id: Mapped[uuid.UUID] = mapped_column()
    job_name: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Environment(Base):
    """Where a service runs (`staging`, `production`, …), with its target and the routing
    the deployment manager wants: which slot is stable and the canary's share."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(20), default="local")
    queue_policy: Mapped[str] = mapped_column(String(20), default=QueuePolicy.ORDERED.value)
    """ordered: queued deployments run in turn; newest-wins: a newer one supersedes them."""
    port: Mapped[int] = mapped_column(Integer)
    """Where the environment serves traffic (the router's frontend)."""
    preview_port: Mapped[int] = mapped_column(Integer)
    """Where the canary/preview slot answers on its own (blue-green previews)."""
    stable_slot: Mapped[str] = mapped_column(String(1), default="a")
    canary_share: Mapped[int] = mapped_column(Integer, default=0)
    """The canary slot's share of traffic, in 1/10,000 (0.01 % steps)."""
    revision: Mapped[int] = mapped_column(Integer, default=0)
    """The number of the deployment whose revision serves as stable (0: none yet)."""
    digest: Mapped[str | None] = mapped_column(String(71), default=None)
    runtime: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """The stable revision's `runtime` (how to restart its instances)."""
    warm_digest: Mapped[str | None] = mapped_column(String(71), default=None)
    warm_until: Mapped[datetime | None] = mapped_column(default=None)
    """The previous stable slot stays warm (switch back in under a second) until then."""
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    fence: Mapped[int] = mapped_column(Integer, default=0)
    """Raised whenever a replica takes the environment over: its driver's writes carry it,
    so a replica that lost the lease cannot write."""
    changes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Raised by every request that changes what the environment runs (each takes
    `deployments.lock`): a settled driver loads the environment again only when it moved."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Deployment(Base):
    """One deployment of an artifact to an environment (docs/states.md)."""

    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("environment_id", "number"),
        Index(None, "environment_id", "phase"),
        Index(None, "phase"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    """The revision number within the environment: 1, 2, 3, …"""
    digest: Mapped[str] = mapped_column(String(71))
    artifact_id: Mapped[uuid.UUID] = mapped_column()
    """The artifact row: its id (UUIDv7, time-ordered) orders revisions by build time."""
    sha: Mapped[str | None] = mapped_column(String(64), default=None)
    runtime: Mapped[dict[str, Any]] = mapped_column()
    """The artifact's `runtime` section (validated), fixed at creation."""
    strategy: Mapped[dict[str, Any]] = mapped_column()
    """{"kind": rolling|blue-green|canary, ...its parameters, "steps": [...]}"""
    kind: Mapped[str] = mapped_column(String(20), default="deploy")
    """deploy | rollback"""
    rollback_of: Mapped[int | None] = mapped_column(Integer, default=None)
    phase: Mapped[str] = mapped_column(String(20), default=Phase.PENDING.value)
    step: Mapped[int] = mapped_column(Integer, default=0)
    step_started_at: Mapped[datetime | None] = mapped_column(default=None)
    pause_reason: Mapped[str | None] = mapped_column(String(20), default=None)
    request: Mapped[str | None] = mapped_column(String(20), default=None)
    """A person's pending command for the driver: promote | promote-full | abort."""
    requested_by: Mapped[str | None] = mapped_column(String(200), default=None)
    """Who gave the latest command (promote, abort, pause, resume)."""
    pre_deploy: Mapped[str | None] = mapped_column(String(20), default=None)
    """Its runtime's `pre_deploy` commands: running | passed | failed (None: not yet)."""
    pre_deploy_host_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("hosts.id", ondelete="SET NULL"), default=None
    )
    """For an environment on the fleet: the host whose agent runs them."""
    pre_deploy_result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """How they ended there, as the host's agent reported it (exit_code, command,
    output)."""
    committed_at: Mapped[datetime | None] = mapped_column(default=None)
    """When its commit was made (DORA's lead time starts there); None without a commit."""
    fix: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Deployed to fix the revision before it: that one counts as a failed change."""
    desired: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    observed: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What the driver wanted and saw when it took its latest action for this deployment
    (planner.states)."""
    paused_by_user: Mapped[bool] = mapped_column(Boolean, default=False)
    started_by: Mapped[str] = mapped_column(String(200), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    run_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    traceparent: Mapped[str | None] = mapped_column(String(64), default=None)
    """The trace context of the request that queued it: its driver's actions join it."""
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """What the environment's protection rules decided when it was asked for
    (policy.gates.Decision.stored): approvals required, risk, timeout, wait timer."""
    requester: Mapped[str | None] = mapped_column(String(64), default=None)
    """Who asked for it, stably (a token's subject): it may not approve it."""
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    """When its last required approval came (or it needed none)."""
    released_at: Mapped[datetime | None] = mapped_column(default=None)
    """When it passed its gate (approvals, wait timer, freeze, stop-the-line) and began
    to change the environment; None while it waits there."""
    emergency: Mapped[str | None] = mapped_column(Text, default=None)
    """The reason of an emergency deploy or rollback: it passes freezes and approvals."""
    job_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    """The pipeline's `deploy:` job that asked for it (blocked while it waits)."""


class DeploymentAction(Base):
    """The driver's log: each action is written as an intent before it acts and marked done
    after, under the environment's fencing token. A new driver finishes an open intent
    (actions are idempotent) instead of starting another."""

    __tablename__ = "deployment_actions"
    __table_args__ = (UniqueConstraint("environment_id", "seq"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    environment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE")
    )
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column()
    fence: Mapped[int] = mapped_column(Integer)
    driver: Mapped[str] = mapped_column(String(100))
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(default=None)


class Instance(Base):
    """One process of a service in an environment, in one of its two slots."""

    __tablename__ = "instances"
    __table_args__ = (Index(None, "environment_id", "state"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    environment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE")
    )
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    revision: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(71))
    slot: Mapped[str] = mapped_column(String(1))
    server: Mapped[str] = mapped_column(String(60))
    """Its name in the router."""
    port: Mapped[int] = mapped_column(Integer)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    pid_started: Mapped[str | None] = mapped_column(String(40), default=None)
    """The process's start time, so that a reused pid is not taken for it."""
    state: Mapped[str] = mapped_column(String(20), default=InstanceState.STARTING.value)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    health_failures: Mapped[int] = mapped_column(Integer, default=0)
    drain_started_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    """When its current process started (restarts reset it)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    host_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("hosts.id", ondelete="SET NULL"), default=None, index=True
    )
    """The host whose agent runs it (None: the coordinator's own machine)."""
    address: Mapped[str | None] = mapped_column(String(64), default=None)
    """Its host's address when it was placed (where the routers reach it)."""
    launch: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """What its agent starts: command, env and health check (fixed when it is placed)."""
    observed: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """What its agent last reported of it (protocol.agent.ObservedInstance)."""
    observed_at: Mapped[datetime | None] = mapped_column(default=None)


class RevisionPin(Base):
    """A revision marked bad by a rollback: not deployed automatically again until someone
    clears the pin (who and when are kept: the audit record)."""

    __tablename__ = "revision_pins"
    __table_args__ = (Index(None, "environment_id", "digest"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    environment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE")
    )
    digest: Mapped[str] = mapped_column(String(71))
    reason: Mapped[str] = mapped_column(Text, default="")
    pinned_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cleared_by: Mapped[str | None] = mapped_column(String(200), default=None)
    cleared_at: Mapped[datetime | None] = mapped_column(default=None)


class AnalysisRun(Base):
    """One analysis of a deployment: a canary step's, its background analysis, a
    blue-green preview's, or the bake after promotion (docs/analysis.md). Its phase is
    what analysis.judge.Analysis folded from its evaluations; the driver reads it."""

    __tablename__ = "analysis_runs"
    __table_args__ = (UniqueConstraint("deployment_id", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(40))
    """`step-<i>`, `background` or `bake`: one run per key and deployment."""
    template: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column()
    """The template (pipeline.analysis.Template) as the deployment stored it."""
    duration_s: Mapped[float | None] = mapped_column(default=None)
    """`for`: None for a background analysis, which never passes by itself."""
    phase: Mapped[str] = mapped_column(String(20), default="running")
    failures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    extended: Mapped[int] = mapped_column(Integer, default=0)
    evaluations: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")
    latest: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """The judgements of its latest evaluation."""
    ended_by: Mapped[str | None] = mapped_column(String(200), default=None)
    """A person who ended it without a verdict (promoted past it, aborted)."""
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


class AnalysisEvaluation(Base):
    """One evaluation of an analysis run: its measurements and judgements, kept for the
    newest `storage.analysis.KEPT` evaluations of each run."""

    __tablename__ = "analysis_evaluations"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("analysis_runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    elapsed_s: Mapped[float] = mapped_column()
    verdict: Mapped[str] = mapped_column(String(20))
    judgements: Mapped[list[Any]] = mapped_column(JSON, default=list)
    measurements: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Alert(Base):
    """An alert that Prometheus's Alertmanager sent about an environment (`POST
    /hooks/alertmanager/{team}/{project}`): the `alert` analysis provider fails a
    deployment of that environment while one that began during it fires."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("environment_id", "fingerprint", "starts_at"),
        Index(None, "environment_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    environment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE")
    )
    fingerprint: Mapped[str] = mapped_column(String(64))
    """Alertmanager's fingerprint of the alert's labels."""
    name: Mapped[str] = mapped_column(String(200))
    """Its `alertname`."""
    status: Mapped[str] = mapped_column(String(20))
    """firing | resolved"""
    labels: Mapped[dict[str, Any]] = mapped_column()
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column(default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One entry of the audit log: who did what, when, in which request. Append-only (a
    trigger refuses UPDATE and DELETE), and chained per team by its hash
    (domain.audit; docs/ids.md)."""

    __tablename__ = "audit_entries"
    __table_args__ = (UniqueConstraint("chain", "seq"), Index(None, "chain", "at"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    chain: Mapped[str] = mapped_column(String(36))
    """The team's id, or `company` for what belongs to no team."""
    seq: Mapped[int] = mapped_column(Integer)
    """1, 2, 3, … within its chain."""
    team: Mapped[str | None] = mapped_column(String(100), default=None)
    """The team's name when it was written (None: the company's chain)."""
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    """domain.audit.Action"""
    target: Mapped[str] = mapped_column(String(300))
    """What it acted on: `team/project/environment#number`, `team/project` secret `NAME`, …"""
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(128), default=None)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The last entry of each audit chain, its number and hash: a removed last entry
    shows, and appending locks this row so that a chain never forks."""

    __tablename__ = "audit_heads"

    chain: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class Protection(Base):
    """An environment's protection rules as its project's maintainers set them (they win
    over the artifact's conveyor.yml `environments:`, field by field)."""

    __tablename__ = "protections"
    __table_args__ = (UniqueConstraint("project_id", "environment"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(100))
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """domain.policy.Rules fields that were set; the others come from conveyor.yml."""
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Approval(Base):
    """One person's decision on a deployment that waits for approval."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("deployment_id", "subject"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE")
    )
    decision: Mapped[str] = mapped_column(String(10))
    """approve | reject"""
    subject: Mapped[str] = mapped_column(String(64))
    """Who, stably (a token's subject): one decision per person."""
    approver: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FreezeWindow(Base):
    """A deploy freeze: a cron start and a duration in a time zone (domain.freeze), for
    the whole company (no team), a team, or one environment of a project."""

    __tablename__ = "freeze_windows"
    __table_args__ = (Index(None, "team_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), default=None
    )
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None
    )
    environment: Mapped[str | None] = mapped_column(String(100), default=None)
    cron: Mapped[str] = mapped_column(String(100))
    duration_s: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    action: Mapped[str] = mapped_column(String(10), default="queue")
    """queue: deploys wait for its end; refuse: they are refused (409)."""
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Switch(Base):
    """A company-wide switch: `stop-the-line` halts every progressing rollout."""

    __tablename__ = "switches"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    on: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    changed_by: Mapped[str] = mapped_column(String(200), default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class HostToken(Base):
    """A credential agents register hosts with: a team's (its hosts run only its
    environments) or the admin's for a shared pool. Revoked, it stops every host that
    registered with it at its next call."""

    __tablename__ = "host_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), default=None
    )
    pool: Mapped[str | None] = mapped_column(String(100), default=None)
    """The shared pool its hosts join (the admin's tokens); None for a team's."""
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Host(Base):
    """A machine an agent runs on: where instances may be placed (docs/states.md)."""

    __tablename__ = "hosts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), default=None
    )
    pool: Mapped[str | None] = mapped_column(String(100), default=None)
    token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("host_tokens.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    address: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    slots: Mapped[int | None] = mapped_column(Integer, default=None)
    memory: Mapped[int | None] = mapped_column(BigInteger, default=None)
    router: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    version: Mapped[str] = mapped_column(String(40), default="")
    """The agent's Conveyor version."""
    state: Mapped[str] = mapped_column(String(20), default="up")
    """up or lost: whether its agent holds the lease (draining is `draining`)."""
    draining: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    drained_at: Mapped[datetime | None] = mapped_column(default=None)
    """When a draining host was found running nothing (its `host.drained` event); None
    while it is not draining or still runs instances."""
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """A router host's routes as its agent last reported them: per route key, the
    version it holds and its servers as HAProxy sees them."""
    fence: Mapped[int] = mapped_column(Integer, default=1)
    """Raised by every registration: a call with an older one is from an agent that
    registered since (or a copy of it), and is refused."""
    generation: Mapped[int] = mapped_column(Integer, default=1)
    """Raised by every change of what the host should run: an agent's long poll returns
    when it passes the one the agent has."""
    lease_until: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoolShare(Base):
    """A shared pool of hosts the admin opened to a team."""

    __tablename__ = "pool_shares"

    pool: Mapped[str] = mapped_column(String(100), primary_key=True)
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Routing(Base):
    """One environment's routing as its team's router hosts should hold it (an
    environment on the coordinator's own HAProxy has none): the route's servers, split
    and checks, and a version raised by every change, which each router reports back
    (hosts.routing) once it holds it."""

    __tablename__ = "routes"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RouterSample(Base):
    """The requests one backend of a route answered in one second through one router
    host, as its agent summed them up: the `router` analysis provider's data for
    environments routed by hosts (kept for SAMPLES_KEPT_S)."""

    __tablename__ = "router_samples"
    __table_args__ = (Index(None, "key", "second"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(40))
    side: Mapped[str] = mapped_column(String(1))
    preview: Mapped[bool] = mapped_column(Boolean, default=False)
    second: Mapped[int] = mapped_column(BigInteger)
    statuses: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency: Mapped[dict[str, Any]] = mapped_column(JSON)
