"""The coordinator's configuration, from Conveyor's settings (CONVEYOR_* variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conveyor.config import Settings
from conveyor.scheduler.service import LEASE_S

ADMIN_TOKEN_FILE = "admin-token"


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    database_url: str | None = None
    admin_token: str | None = None
    secret_key: str | None = None
    lease_s: float = LEASE_S
    long_poll_s: float = 30.0
    recheck_s: float = 1.0
    workers: int = 1
    """Processes serving this data directory (`serve --workers N`)."""
    """How often a waiting runner request looks for jobs without being woken."""
    sweep_s: float = 1.0
    host_lease_s: float = 15.0
    """How long a host's lease lasts after each call of its agent."""
    embedded_agent: bool = False
    """This machine is a host too, through an agent in this process (embedded.py). Off
    for a config built in code (the in-process apps of tests); `conveyor serve` takes
    the setting, whose default is on."""
    local_host_name: str | None = None
    rate_limit: str = "50/second"
    """Requests per API token (`limits` notation); runners are not limited."""
    hook_rate_limit: str = "100/second"
    """Webhook deliveries per project."""
    redis_url: str | None = None
    """Count rate limits in Redis (shared by replicas) instead of in memory."""
    hook_body_mb: int = 25
    """The largest webhook body (GitHub sends up to 25 MB)."""
    cache_quota_mb: int = 256
    """Each team's cache archives together, in MiB; the least recently used go first."""
    artifact_max_mb: int = 2048
    """The largest artifact, in MiB."""
    artifacts_url: str | None = None
    artifacts_cache_mb: int = 10240
    """`s3://…`: artifacts in object storage (artifacts.s3); None: under the data dir."""
    inbox_poll_s: float = 1.0
    schedule_check_s: float = 15.0
    public_url: str = "http://127.0.0.1:8080"
    """Where people reach this server: links in commit statuses."""
    gc_every_s: float = 3600.0
    """How often housekeeping runs: artifact retention and expired idempotency keys."""
    deploy_tick_s: float = 0.1
    """How often each environment's driver takes its next step."""
    deploy_lease_s: float = 3.0
    """How long a replica's hold on an environment lasts unless renewed."""
    status_poll_s: float = 1.0
    status_backoff_s: float = 5.0
    prometheus_url: str | None = None
    """The Prometheus of `prometheus` analysis metrics without an `address`."""
    metrics_token: str | None = None
    """A bearer token that may read `/metrics` besides admin tokens."""
    metrics_every_s: float = 5.0
    """How often the gauges counted from the database are refreshed."""
    notify_poll_s: float = 1.0
    """How often each replica fans out new events and posts the webhooks due."""
    notify_backoff_s: float = 1.0
    notify_backoff_max_s: float = 300.0
    """A failed webhook is retried after 1, 2, 4 … seconds, at most this long apart."""
    notify_give_up_s: float = 86_400.0
    """A webhook not delivered this long after its event is given up."""
    nats_url: str | None = None
    """`nats://host:4222`: lifecycle events also go to NATS JetStream as CDEvents."""
    nats_stream: str = "CONVEYOR_EVENTS"
    nats_subject_prefix: str = "conveyor"
    events_keep_days: int = 14
    """Events (and their deliveries) older than this are deleted by housekeeping."""
    """How often every replica looks for due `on.schedule` slots."""


def server_config(settings: Settings, data_dir: Path | None = None) -> ServerConfig:
    """The coordinator's configuration from Conveyor's settings (CONVEYOR_* variables)."""
    return ServerConfig(
        data_dir=(data_dir or settings.data_dir).resolve(),
        database_url=settings.database_url,
        admin_token=settings.admin_token,
        secret_key=settings.secret_key,
        recheck_s=settings.recheck_seconds,
        workers=settings.workers,
        rate_limit=settings.rate_limit,
        hook_rate_limit=settings.hook_rate_limit,
        redis_url=settings.redis_url,
        cache_quota_mb=settings.cache_quota_mb,
        artifact_max_mb=settings.artifact_max_mb,
        artifacts_url=settings.artifacts_url,
        artifacts_cache_mb=settings.artifacts_cache_mb,
        public_url=settings.public_url,
        prometheus_url=settings.prometheus_url,
        metrics_token=settings.metrics_token,
        nats_url=settings.nats_url,
        nats_stream=settings.nats_stream,
        nats_subject_prefix=settings.nats_subject_prefix,
        notify_backoff_max_s=settings.notify_backoff_max_s,
        notify_give_up_s=settings.notify_give_up_s,
        host_lease_s=settings.host_lease_seconds,
        embedded_agent=settings.embedded_agent,
        local_host_name=settings.local_host_name,
    )
