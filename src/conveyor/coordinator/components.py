"""One coordinator replica's components: the migrated database, the bootstrap admin
token, the scheduler, intake, commit statuses, artifact store, deployment manager and
notifications, and the loops (loops.py) that run beside the API; all of it stopped on
exit. The ASGI app (app.py) keeps what `running` yields for the request handlers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from conveyor.api.auth import ADMIN_PREFIX, new_token, token_hash
from conveyor.api.limits import RateLimit
from conveyor.api.metrics import refresh_forever
from conveyor.api.state import Coordinator
from conveyor.artifacts.blobs import BlobStore, FileBlobStore
from conveyor.coordinator.config import ADMIN_TOKEN_FILE, ServerConfig
from conveyor.coordinator.embedded import EmbeddedAgent
from conveyor.coordinator.loops import Loop, Loops, housekeeping, lost_hosts, sweep
from conveyor.deploy.analyses import default_providers
from conveyor.deploy.manager import DeploymentManager
from conveyor.deploy.metrics_targets import METRICS_TARGETS
from conveyor.deploy.routers import HostRouters, Routers
from conveyor.domain.roles import Role
from conveyor.filelock import exclusive
from conveyor.hosting.haproxy import HAProxyRouter
from conveyor.hosting.processes import LocalTarget
from conveyor.intake.inbox import Intake
from conveyor.intake.schedules import Schedules
from conveyor.notify.bus import EventBus, NatsPublisher
from conveyor.notify.statuses import Statuses
from conveyor.notify.webhooks import Webhooks
from conveyor.observability import tracing
from conveyor.scheduler.service import Scheduler
from conveyor.storage import tokens
from conveyor.storage.database import Database, database_url
from conveyor.storage.migrate import upgrade
from conveyor.storage.secrets import SecretBox, load_key
from conveyor.vcs import MirrorSet

log = logging.getLogger("conveyor.coordinator")


async def bootstrap_admin(db: Database, config: ServerConfig) -> str | None:
    """Make sure an admin token exists. Returns a newly generated token (to print once),
    or None when CONVEYOR_ADMIN_TOKEN was given or an admin token already existed."""
    async with db.transaction() as session:
        if not db.is_sqlite:
            await tokens.take_bootstrap_turn(session)
        if config.admin_token:
            digest = token_hash(config.admin_token)
            if await tokens.api_token(session, digest) is None:
                await tokens.add_api_token(session, None, "admin (env)", Role.ADMIN.label, digest)
            return None
        if await tokens.any_with_role(session, Role.ADMIN.label):
            return None
        token = new_token(ADMIN_PREFIX)
        await tokens.add_api_token(session, None, "admin", Role.ADMIN.label, token_hash(token))
    path = config.data_dir / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


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
    blobs = blob_store(config)
    target = LocalTarget(config.data_dir / "deploy")
    routers = HostRouters(db)
    router = Routers(HAProxyRouter(config.data_dir / "deploy" / "router"), routers)
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
        host_lease_s=config.host_lease_s,
    )
    manager.wake_host = state.fleet.poke  # an instance placed on a host: its agent hears now
    state.fleet.routers = routers  # router hosts' reports wake the passes waiting for them
    schedules = Schedules(intake, check_s=config.schedule_check_s)
    webhooks = Webhooks(
        db,
        box,
        public_url=config.public_url,
        poll_s=config.notify_poll_s,
        backoff_s=config.notify_backoff_s,
        backoff_max_s=config.notify_backoff_max_s,
        give_up_s=config.notify_give_up_s,
    )
    named: dict[str, Loop] = {
        "sweep": lambda: sweep(scheduler, config.sweep_s),
        "hosts": lambda: lost_hosts(state),
        "listen": scheduler.listen,
        "inbox": intake.work,
        "schedules": schedules.work,
        "statuses": statuses.work,
        "deployments": manager.work,
        "housekeeping": lambda: housekeeping(state, config.gc_every_s, config.events_keep_days),
        "metrics": lambda: refresh_forever(db, config.metrics_every_s),
        "webhooks": webhooks.work,
    }
    if config.nats_url:
        prefix = config.nats_subject_prefix
        publisher = NatsPublisher(config.nats_url, config.nats_stream, prefix)
        named["bus"] = EventBus(db, publisher, public_url=config.public_url, prefix=prefix).work
    agent = None
    if config.embedded_agent:
        agent = EmbeddedAgent(state.fleet, blobs, config.data_dir, config.local_host_name)
        named["agent"] = agent.serve
        manager.local_host = True
    loops = Loops(named)
    loops.start()
    try:
        yield state
    finally:
        if agent is not None:
            agent.stop()
        await loops.stop()
        await statuses.client.aclose()
        await target.close()
        await mirrors.close()
        await db.dispose()
        if traces is not None:  # sends the spans still buffered
            await asyncio.to_thread(traces.shutdown)


def blob_store(config: ServerConfig) -> BlobStore:
    """Artifacts under the data directory, or in object storage when an `s3://` URL is
    set (each replica then keeps a cache of its own under the data directory)."""
    if config.artifacts_url is None:
        return FileBlobStore(config.data_dir / "artifacts")
    from conveyor.artifacts.s3 import S3BlobStore

    return S3BlobStore(
        config.artifacts_url,
        config.data_dir / "artifacts-cache",
        cache_bytes=config.artifacts_cache_mb * 1024 * 1024,
    )
