"""Settings from the environment (prefix `CONVEYOR_`), overridable by CLI options."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Conveyor's settings. Each field is read from `CONVEYOR_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    data_dir: Path = Path(".conveyor")
    """Logs, artifacts, caches and the SQLite database."""
    database_url: str | None = None
    """`postgresql://…` to use PostgreSQL; unset means SQLite in the data directory."""
    admin_token: str | None = None
    """The admin token to accept (`CONVEYOR_ADMIN_TOKEN`); unset means one is generated
    on first start and written to `<data-dir>/admin-token`."""
    recheck_seconds: float = 1.0
    """How often a waiting runner request looks for new jobs without being woken (jobs
    made ready in the same process, or announced by PostgreSQL NOTIFY, wake it at once)."""
    workers: int = 1
    """Processes of this `conveyor serve` (`--workers`, which sets `CONVEYOR_WORKERS`)."""
    cache_quota_mb: int = 256
    """Per team: the coordinator keeps at most this much cache, evicting the least
    recently used archives first."""
    artifact_max_mb: int = 2048
    """The largest artifact the coordinator accepts, in MiB (uploads stream to disk)."""
    artifacts_url: str | None = None
    """`s3://bucket/prefix[?presign=SECONDS]`: artifacts in S3-compatible object storage,
    shared by replicas on different machines (boto3's settings: `AWS_ENDPOINT_URL`,
    `AWS_ACCESS_KEY_ID`, …); unset means files under the data directory."""
    artifacts_cache_mb: int = 10240
    """With artifacts in object storage: the most each replica keeps of them on its own
    disk, in MiB (the least recently used go first)."""
    rate_limit: str = "50/second"
    """Requests per API token, in `limits` notation ("50/second", "1000/minute")."""
    hook_rate_limit: str = "100/second"
    """Webhook deliveries per project, in `limits` notation; more get 429 + Retry-After."""
    redis_url: str | None = None
    """`redis://host:port`: rate limits are counted in Redis, shared by all replicas;
    unset means each replica counts in memory."""
    public_url: str = "http://127.0.0.1:8080"
    """The URL people use to reach the server: the links in commit statuses."""
    secret_key: str | None = None
    """AES-256 key for secrets at rest (32 bytes, URL-safe base64); unset means a key file
    `<data-dir>/secret-key` is generated. Every replica needs the same key."""
    prometheus_url: str | None = None
    """`http://host:9090`: the Prometheus that `prometheus` analysis metrics query unless
    a metric names its own `address`."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """Log lines as JSON, or readable on a terminal; `auto`: readable on a terminal only."""
    log_level: str = "INFO"
    metrics_token: str | None = None
    """A bearer token that may read `/metrics` (an admin token always may)."""
    host_lease_seconds: float = 15.0
    """How long a host's lease lasts after each call of its agent: a host whose agent
    is not heard from for longer is lost (its instances count as gone)."""
    embedded_agent: bool = True
    """This machine is a host of the fleet too: the coordinator runs an agent in its own
    process (pool `local`, label `conveyor.local=true`, address 127.0.0.1), and a
    service with no `placement` runs here through it, the same path as on any host."""
    local_host_name: str | None = None
    """The embedded agent's host name (default: this machine's hostname)."""
    nats_url: str | None = None
    """`nats://127.0.0.1:4222`: lifecycle events also go to NATS JetStream, as CDEvents."""
    nats_stream: str = "CONVEYOR_EVENTS"
    """The JetStream stream (created when missing) that takes `<prefix>.>`."""
    nats_subject_prefix: str = "conveyor"
    """Subjects are `<prefix>.<team>.<project>.<event type>`."""
    notify_backoff_max_s: float = 300.0
    """The longest wait between two tries of a webhook delivery."""
    notify_give_up_s: float = 86_400.0
    """A webhook not delivered this long after its event is given up."""
    metrics_address: str | None = None
    """`host:port`: `conveyor serve` also answers `/metrics` there, with no token (for a
    Prometheus on a trusted network)."""
    secrets: str = ""
    """Names of environment variables whose values are secrets: handed to jobs and masked
    in every log line. Comma or space separated."""

    def secret_values(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The secrets named in `secrets`, with their values from the environment."""
        env = os.environ if environ is None else environ
        names = self.secrets.replace(",", " ").split()
        return {name: env[name] for name in names if name in env}
