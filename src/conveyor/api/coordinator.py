"""The coordinator's wiring: its configuration, the components one replica is made of
(database, scheduler, intake, commit statuses, artifact store, deployment manager), and
the background loops every replica runs beside the API:

    sweep          expire lost runner leases (every `sweep_s`)
    listen         wake waiting runners on other replicas' announcements (PostgreSQL)
    inbox          translate stored webhook deliveries into runs
    schedules      fire due `on.schedule` slots
    statuses       queue and send commit statuses
    deployments    claim environments and drive their deployments
    housekeeping   artifact retention and expired idempotency keys (hourly)
    metrics        the gauges of /metrics counted from the database (every 5 s)

`running(config)` builds them, starts the loops, and stops everything on exit; the ASGI
app (app.py) keeps what it yields for the request handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from conveyor.api import idempotency
from conveyor.api.auth import ADMIN_PREFIX, new_token, token_hash
from conveyor.api.limits import RateLimit
from conveyor.api.metrics import refresh_forever
from conveyor.api.state import Coordinator
from conveyor.artifacts.blobs import FileBlobStore
from conveyor.config import Settings
from conveyor.deploy.analyses import default_providers
from conveyor.deploy.manager import DeploymentManager
from conveyor.deploy.metrics_targets import METRICS_TARGETS
from conveyor.deploy.router.haproxy import HAProxyRouter
from conveyor.deploy.targets.local import LocalTarget
from conveyor.domain.roles import Role
from conveyor.filelock import exclusive
from conveyor.intake.inbox import Intake
from conveyor.intake.schedules import Schedules
from conveyor.notify.bus import EventBus, NatsPublisher
from conveyor.notify.statuses import Statuses
from conveyor.notify.webhooks import Webhooks
from conveyor.observability import tracing
from conveyor.scheduler.service import LEASE_S, Scheduler
from conveyor.storage import artifacts as artifacts_store
from conveyor.storage import events, tokens
from conveyor.storage.database import Database, database_url
from conveyor.storage.migrate import upgrade
from conveyor.storage.secrets import SecretBox, load_key
from conveyor.storage.tables import utcnow
from conveyor.vcs import MirrorSet

log = logging.getLogger("conveyor.api")
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


async def bootstrap_admin(db: Database, config: ServerConfig) -> str | None:
    """Make sure an admin token exists. Returns a newly generated token (to print once),
    or None when CONVEYOR_ADMIN_TOKEN was given or an admin token already existed."""
    async with db.transaction() as session:
        if not db.is_sqlite:
            await tokens.take_bootstrap_turn(session)
        if config.admin_token:
            digest = token_hash(config.admin_token)
            if await tokens.api_token(session, digest) is None:
                tokens.add_api_token(session, None, "admin (env)", Role.ADMIN.label, digest)
            return None
        if await tokens.any_with_role(session, Role.ADMIN.label):
            return None
        token = new_token(ADMIN_PREFIX)
        tokens.add_api_token(session, None, "admin", Role.ADMIN.label, token_hash(token))
    path = config.data_dir / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


SHUTDOWN_WAIT_S = 5.0


def _dump_tasks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` writes every asyncio task's stack to the log: what a stuck
    coordinator is waiting for."""
    loop = asyncio.get_running_loop()

    def dump() -> None:
        out = io.StringIO()
        for task in asyncio.all_tasks(loop):
            task.print_stack(file=out)
        log.warning("asyncio tasks of pid %d:\n%s", os.getpid(), out.getvalue())

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGUSR1, dump)


async def _sweep(scheduler: Scheduler, every: float) -> None:
    """Expire lost leases, on every replica (the guarded updates make that safe)."""
    while True:
        try:
            await scheduler.expire_leases()
        except Exception:  # pragma: no cover - logged, and the next pass retries
            log.exception("lease sweep failed")
        await asyncio.sleep(every)


async def _housekeeping(state: Coordinator, every: float, keep_days: int) -> None:
    """Artifact retention and expired idempotency keys, on every replica (deleting what
    is gone already is a no-op)."""
    while True:
        await asyncio.sleep(every)
        try:
            rows, blobs = await artifacts_store.collect_garbage(state.db, state.blobs, utcnow())
            if rows or blobs:
                log.info("artifact retention: %d artifact(s), %d blob(s) deleted", rows, blobs)
            keys = await idempotency.purge_expired(state.db, utcnow())
            if keys:
                log.info("idempotency: %d expired key(s) deleted", keys)
            async with state.db.transaction() as session:
                old = await events.prune(session, utcnow() - timedelta(days=keep_days))
            if old:
                log.info("events: %d older than %d days deleted", old, keep_days)
        except Exception:  # pragma: no cover - logged, and the next pass retries
            log.exception("housekeeping failed")


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
        public_url=settings.public_url,
        prometheus_url=settings.prometheus_url,
        metrics_token=settings.metrics_token,
        nats_url=settings.nats_url,
        nats_stream=settings.nats_stream,
        nats_subject_prefix=settings.nats_subject_prefix,
        notify_backoff_max_s=settings.notify_backoff_max_s,
        notify_give_up_s=settings.notify_give_up_s,
    )


@contextlib.contextmanager
def startup_lock(config: ServerConfig) -> Iterator[None]:
    """Processes sharing one data directory (`serve --workers N` on SQLite) migrate and
    bootstrap one at a time. PostgreSQL replicas use advisory locks instead."""
    with exclusive(config.data_dir / "startup.lock"):
        yield


@asynccontextmanager
async def running(config: ServerConfig) -> AsyncIterator[Coordinator]:
    """One coordinator replica: the migrated database, the bootstrap admin token, every
    component and the background loops; all of it stopped on exit."""
    _dump_tasks_on_sigusr1()
    traces = tracing.configure("conveyor-coordinator")
    db = Database(database_url(config.data_dir, config.database_url))
    with startup_lock(config):
        await upgrade(db)
        generated = await bootstrap_admin(db, config)
    if generated:
        print(
            f"admin token (printed once, also in {config.data_dir / ADMIN_TOKEN_FILE}): "
            f"{generated}",
            flush=True,
        )
    box = SecretBox(load_key(config.data_dir, config.secret_key))
    # Every announcement reaches every replica on PostgreSQL (NOTIFY); on SQLite only
    # within one process, so several processes do not skip a look on that account.
    scheduler = Scheduler(
        db,
        lease_s=config.lease_s,
        secrets=box,
        hints=not db.is_sqlite or config.workers == 1,
    )
    mirrors = MirrorSet(config.data_dir / "repos")
    intake = Intake(scheduler, box, mirrors.get, poll_s=config.inbox_poll_s)
    statuses = Statuses(
        db,
        box,
        public_url=config.public_url,
        poll_s=config.status_poll_s,
        backoff_s=config.status_backoff_s,
    )
    blobs = FileBlobStore(config.data_dir / "artifacts")
    target = LocalTarget(config.data_dir / "deploy")
    router = HAProxyRouter(config.data_dir / "deploy" / "router")
    manager = DeploymentManager(
        db,
        blobs,
        target,
        router,
        tick_s=config.deploy_tick_s,
        lease_s=config.deploy_lease_s,
        providers=default_providers(
            router,
            db,
            prometheus_url=config.prometheus_url,
            scheduler=scheduler,
            mirror=mirrors.get,
        ),
        metrics_targets=config.data_dir / "deploy" / METRICS_TARGETS,
    )
    state = Coordinator(
        db=db,
        scheduler=scheduler,
        data_dir=config.data_dir,
        secrets=box,
        rate_limit=RateLimit(config.rate_limit, redis_url=config.redis_url),
        hook_limit=RateLimit(config.hook_rate_limit, scope="hooks", redis_url=config.redis_url),
        intake=intake,
        mirrors=mirrors,
        cache_quota=config.cache_quota_mb * 1024 * 1024,
        blobs=blobs,
        deploy=manager,
        artifact_limit=config.artifact_max_mb * 1024 * 1024,
        long_poll_s=config.long_poll_s,
        recheck_s=config.recheck_s,
    )
    loops: dict[str, Coroutine[Any, Any, None]] = {
        "sweep": _sweep(scheduler, config.sweep_s),
        "listen": scheduler.listen(),
        "inbox": intake.work(),
        "schedules": Schedules(intake, check_s=config.schedule_check_s).work(),
        "statuses": statuses.work(),
        "deployments": manager.work(),
        "housekeeping": _housekeeping(state, config.gc_every_s, config.events_keep_days),
        "metrics": refresh_forever(db, config.metrics_every_s),
        "webhooks": Webhooks(
            db,
            box,
            public_url=config.public_url,
            poll_s=config.notify_poll_s,
            backoff_s=config.notify_backoff_s,
            backoff_max_s=config.notify_backoff_max_s,
            give_up_s=config.notify_give_up_s,
        ).work(),
    }
    if config.nats_url:
        prefix = config.nats_subject_prefix
        publisher = NatsPublisher(config.nats_url, config.nats_stream, prefix)
        bus = EventBus(db, publisher, public_url=config.public_url, prefix=prefix)
        loops["bus"] = bus.work()
    tasks = [asyncio.create_task(loop, name=name) for name, loop in loops.items()]
    try:
        yield state
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, SHUTDOWN_WAIT_S)
            if not task.done():  # pragma: no cover - logged to find what hangs
                log.error("background loop %s did not stop", task.get_name())
        await statuses.client.aclose()
        await target.close()
        await mirrors.close()
        await db.dispose()
        if traces is not None:  # sends the spans still buffered
            await asyncio.to_thread(traces.shutdown)
