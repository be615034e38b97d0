"""`/metrics` on the API: every request timed by route template (the ASGI middleware),
the exposition itself, protected by the scrape token (`CONVEYOR_METRICS_TOKEN`) or an
admin token, and the loop that refreshes the gauges counted from the database. An open
listener on another address (`CONVEYOR_METRICS_ADDRESS`) is started by `conveyor serve`
(cli/processes.py)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api.auth import bearer, principal_for
from conveyor.api.errors import ApiError
from conveyor.domain.clock import utcnow
from conveyor.domain.dora import Change, figures
from conveyor.observability import metrics, tracing
from conveyor.observability.logs import bound
from conveyor.storage import dora, gauges, names, runs
from conveyor.storage.database import Database

log = logging.getLogger("conveyor.api")
UNMATCHED = "unmatched"


class RequestMetrics:
    """Every HTTP request: timed by method, route template and status code; given a
    request id (the client's `X-Request-Id`, or a new one), bound to every log line it
    causes and sent back; and logged in one line when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        request_id = _request_id(scope)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (REQUEST_ID, request_id)]
            await send(message)

        method = scope.get("method", "")
        ident = request_id.decode()
        # FastAPI's server span for this request is current here (tracing.fastapi_telemetry).
        tracing.annotate({"conveyor.request_id": ident})
        with bound(request_id=ident):
            try:
                await self.app(scope, receive, sending)
            finally:
                route: Any = scope.get("route")
                template = getattr(route, "path", None) or UNMATCHED
                took = time.perf_counter() - began
                metrics.http_request_duration.labels(method, template, str(status)).observe(took)
                level = _level(template, status)
                if level is not None and log.isEnabledFor(level):
                    params = {
                        (f"path_{k}" if k in RESERVED else k): str(v)
                        for k, v in scope.get("path_params", {}).items()
                    }
                    log.log(
                        level,
                        "%s %s %s %.1f ms",
                        method,
                        template,
                        status,
                        took * 1000,
                        extra={"route": template, "status": status, "ms": round(took * 1000, 1)}
                        | params,
                    )


REQUEST_ID = b"x-request-id"
RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
"""A log record's own attributes: a path parameter of that name (`/hosts/{name}`) is
logged as `path_<name>`, since `extra` may not overwrite them."""
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
"""Routes asked every few seconds by probes and scrapers: not logged."""
RUNNER_ROUTES = "/api/v1/runners/jobs/"
"""The runner protocol's calls (claims, heartbeats, log chunks, finishes): several per job,
logged at DEBUG when they succeed; people's requests and every refusal at INFO."""


def _level(template: str, status: int) -> int | None:
    """The level of a request's log line (None: not logged)."""
    if template in QUIET:
        return None
    if template.startswith(RUNNER_ROUTES) and status < 400:
        return logging.DEBUG
    return logging.INFO


def _request_id(scope: Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID and 0 < len(value) <= 128 and value.isascii():
            return bytes(value)
    return uuid.uuid4().hex.encode()


async def authorise(request: Request, db: Database, token: str | None) -> None:
    """The scrape token, or an admin token: 401 without either."""
    given = bearer(request)
    if token and hmac.compare_digest(given.encode(), token.encode()):
        return
    async with db.transaction() as session:
        who = await principal_for(session, given)
    if not who.is_admin:
        raise ApiError(403, "forbidden", "metrics need the scrape token or an admin token")


def exposition() -> Response:
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)


FINISHED_WITHIN = timedelta(days=2)
"""Runs created longer ago that are still open are not watched for their end."""


async def refresh(db: Database) -> None:
    """The gauges counted from the database, now; and the runs that finished since the
    last time (each counted once, by whichever replica marks it)."""
    async with db.transaction() as session:
        found = await gauges.counts(session)
        for run in await runs.newly_finished(session, utcnow() - FINISHED_WITHIN):
            team = await names.team(session, run.team_id)
            project = await names.project(session, run.project_id)
            metrics.runs_finished.labels(team, project, run.status.value).inc()
    metrics.set_gauge(metrics.jobs_waiting, found.jobs)
    metrics.set_gauge(metrics.runners_online, found.runners)
    metrics.set_gauge(metrics.deployments_active, found.deployments)
    metrics.set_gauge(metrics.deployment_oldest_active, found.oldest)
    metrics.set_gauge(metrics.approvals_waiting, found.approvals)
    metrics.set_gauge(metrics.hosts, found.hosts)
    metrics.set_gauge(metrics.host_slots, found.slots)
    metrics.set_gauge(metrics.host_slots_used, found.slots_used)


DORA_EVERY_S = 60.0
"""DORA's figures move by the day: computed once a minute, not at every refresh."""


async def refresh_dora(db: Database) -> None:
    """The `conveyor_dora` gauges: each team's four keys over the last 30 days."""
    days = float(metrics.DORA_WINDOW_DAYS)
    end = utcnow()
    async with db.transaction() as session:
        found = await dora.changes(session, None, end - timedelta(days=days), end)
    by_team: dict[str, list[Change]] = defaultdict(list)
    for change in found:
        by_team[change.team].append(change)
    values: list[tuple[tuple[str, str], float]] = []
    for team, changes in sorted(by_team.items()):
        keys = figures(changes, days)
        for key, value in (
            ("deploys_per_day", keys.per_day),
            ("lead_time_seconds", keys.lead_time_s),
            ("change_failure_rate", keys.failure_rate),
            ("recovery_seconds", keys.recovery_s),
        ):
            values.append(((team, key), math.nan if value is None else value))
    metrics.set_gauge(metrics.dora, values)


async def refresh_forever(db: Database, every: float) -> None:
    """The coordinator's `metrics` loop."""
    dora_due = 0.0
    while True:
        try:
            await refresh(db)
            if time.monotonic() >= dora_due:
                await refresh_dora(db)
                dora_due = time.monotonic() + DORA_EVERY_S
        except Exception:  # pragma: no cover - logged; the next round tries again
            log.exception("refreshing the metrics' gauges failed")
        await asyncio.sleep(every)
