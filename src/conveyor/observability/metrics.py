"""Conveyor's own metrics, for Prometheus (prometheus-client; every name, type, unit and
label is in docs/metrics.md). Each component counts what it does where it does it;
`exposition` renders them for `/metrics`.

Names follow Prometheus's conventions: the `conveyor_` prefix, base units (`_seconds`,
`_bytes`), counters ending in `_total`. Labels are bounded: team, project, environment,
a status or an outcome, a route template, a stage; never an id, a ref or a sha.

With `conveyor serve --workers N`, the processes share a directory of counters
(prometheus-client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`, set by `serve`), so
that any of them answers for all; a gauge computed when scraped keeps the most recent
value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: they double the page and nobody reads them
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text format every Prometheus reads (2.x included)."""

FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Buckets for requests and short waits, in seconds."""
WAITS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
LONG = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
TRANSACTIONS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# -- the API -----------------------------------------------------------------------------

http_request_duration = Histogram(
    "conveyor_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status code.",
    ["method", "route", "status"],
    buckets=FAST,
)

# -- runs and jobs -----------------------------------------------------------------------

runs_finished = Counter(
    "conveyor_runs_finished_total",
    "Runs that reached a final status.",
    ["team", "project", "status"],
)
jobs_finished = Counter(
    "conveyor_jobs_finished_total",
    "Jobs that reached a final status.",
    ["team", "status"],
)
job_queue_wait = Histogram(
    "conveyor_job_queue_wait_seconds",
    "From a job becoming pending to a runner taking it.",
    ["team"],
    buckets=WAITS,
)
push_to_start = Histogram(
    "conveyor_push_to_start_seconds",
    "From a webhook delivery's arrival to the first job of its run starting.",
    ["team"],
    buckets=WAITS,
)
job_duration = Histogram(
    "conveyor_job_duration_seconds",
    "How long a job's attempt ran on its runner, by stage.",
    ["team", "stage", "status"],
    buckets=LONG,
)
jobs_waiting = Gauge(
    "conveyor_jobs",
    "Jobs pending or running now, per team (the queue's depth); computed when scraped.",
    ["team", "status"],
    multiprocess_mode="mostrecent",
)
runners_online = Gauge(
    "conveyor_runners_online",
    'Runners that asked for work recently, per team (shared runners: team="").',
    ["team"],
    multiprocess_mode="mostrecent",
)
hosts = Gauge(
    "conveyor_hosts",
    'Hosts of the fleet per team (a shared pool: team="", pool named) and state (up, '
    "draining, lost); computed when scraped.",
    ["team", "pool", "state"],
    multiprocess_mode="mostrecent",
)
host_slots_used = Gauge(
    "conveyor_host_slots_used",
    "Instances placed on hosts that are up or draining, per team and pool, against "
    "conveyor_host_slots (the sum of those hosts' slots; hosts with no limit count 0).",
    ["team", "pool"],
    multiprocess_mode="mostrecent",
)
host_slots = Gauge(
    "conveyor_host_slots",
    "Slots of hosts that are up or draining, per team and pool.",
    ["team", "pool"],
    multiprocess_mode="mostrecent",
)
agent_calls = Counter(
    "conveyor_agent_calls_total",
    "Calls of host agents: join, desired (a long poll, which renews the lease), report.",
    ["call"],
)
hosts_lost = Counter(
    "conveyor_hosts_lost_total",
    "Hosts found lost: their agent's lease ran out.",
)
placement_failures = Counter(
    "conveyor_placement_failures_total",
    "Times no host could take a new instance (its deployment paused for placement).",
)
lease_expiries = Counter(
    "conveyor_job_lease_expiries_total",
    "Running jobs whose runner stopped renewing its lease (runner lost).",
)

# -- webhooks, caches, artifacts ---------------------------------------------------------

webhook_deliveries = Counter(
    "conveyor_webhook_deliveries_total",
    "Webhook deliveries answered, by provider and outcome (accepted, duplicate, ignored, "
    "refused, unavailable).",
    ["provider", "outcome"],
)
intake_lag = Histogram(
    "conveyor_intake_lag_seconds",
    "From a delivery's arrival to its translation into runs.",
    ["provider"],
    buckets=WAITS,
)
cache_requests = Counter(
    "conveyor_cache_requests_total",
    "Job cache lookups, by result (hit, miss).",
    ["team", "result"],
)
artifact_bytes = Counter(
    "conveyor_artifact_bytes_total",
    "Artifact bytes moved through the coordinator, by direction (upload, download).",
    ["team", "direction"],
)

# -- deployments and analysis ------------------------------------------------------------

deployments_finished = Counter(
    "conveyor_deployments_finished_total",
    "Deployments that ended, by strategy and phase (succeeded, aborted, failed).",
    ["team", "project", "environment", "strategy", "phase"],
)
deployment_duration = Histogram(
    "conveyor_deployment_duration_seconds",
    "From a deployment's start to its end.",
    ["strategy", "phase"],
    buckets=LONG,
)
rollbacks = Counter(
    "conveyor_rollbacks_total",
    "Rollbacks queued, by trigger (automatic: a failed bake; manual: a person).",
    ["team", "project", "environment", "trigger"],
)
analysis_verdicts = Counter(
    "conveyor_analysis_verdicts_total",
    "Analysis runs that ended, by phase (passed, failed, inconclusive, stopped).",
    ["team", "project", "environment", "phase"],
)
analysis_time_to_detect = Histogram(
    "conveyor_analysis_time_to_detect_seconds",
    "From an analysis run's start to its failed verdict.",
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
deployments_active = Gauge(
    "conveyor_deployments",
    "Deployments pending, progressing or paused now, per team; computed when scraped.",
    ["team", "phase"],
    multiprocess_mode="mostrecent",
)
deployment_oldest_active = Gauge(
    "conveyor_deployment_oldest_active_seconds",
    "Age of the oldest deployment progressing or paused, per team (a stuck rollout shows "
    "here); computed when scraped.",
    ["team"],
    multiprocess_mode="mostrecent",
)
approvals_waiting = Gauge(
    "conveyor_approvals_waiting",
    "Deployments waiting for approvals now, per team; computed when scraped.",
    ["team"],
    multiprocess_mode="mostrecent",
)

# -- DORA's four keys (docs/dora.md) ----------------------------------------------------

DORA_WINDOW_DAYS = 30
dora = Gauge(
    "conveyor_dora",
    "DORA's four keys per team over the last 30 days of production deployments: "
    "key=deploys_per_day, lead_time_seconds, change_failure_rate or recovery_seconds "
    "(NaN: no deploy to measure); refreshed each minute.",
    ["team", "key"],
    multiprocess_mode="mostrecent",
)

# -- the database ------------------------------------------------------------------------

db_statements = Counter(
    "conveyor_db_statements_total",
    "SQL statements sent to the database.",
)
db_transaction_duration = Histogram(
    "conveyor_db_transaction_duration_seconds",
    "How long a database transaction was open, waits for SQLite's writer turn included.",
    buckets=TRANSACTIONS,
)


_seen: dict[int, set[tuple[str, ...]]] = {}
"""Per gauge, the label values set before: set to 0 when they have none any more."""


def set_gauge(gauge: Gauge, values: Iterable[tuple[tuple[str, ...], float]]) -> None:
    """Every labelled value of a gauge computed from the database. Label values that had
    a value before and have none now go to 0 rather than away: with several worker
    processes a value cannot be removed, only overwritten (the most recent wins)."""
    now = dict(values)
    name = id(gauge)
    for labels in _seen.get(name, set()) - now.keys():
        gauge.labels(*labels).set(0)
    for labels, value in now.items():
        gauge.labels(*labels).set(value)
    _seen[name] = _seen.get(name, set()) | now.keys()


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> bytes:
    """Every metric in Prometheus's text format: this process's, or, with several worker
    processes, all of theirs."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def serve_open(address: str) -> None:
    """Answer `/metrics` on `host:port` with no token, from a thread of this process (for
    a Prometheus on a trusted network): with several workers, all of theirs."""
    host, _, port = address.rpartition(":")
    registry = REGISTRY
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
