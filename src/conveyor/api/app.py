"""The API's ASGI app: the routes, the error handlers, the body limits and the probes.
What it serves over (a `Coordinator`, api/state.py) is made and stopped by the lifespan
it is given (conveyor.coordinator wires one replica)."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import cast

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.telemetry import TelemetryConfig

from conveyor import __version__
from conveyor.api import contract, errors
from conveyor.api.errors import ApiError
from conveyor.api.limits import BodyLimit
from conveyor.api.metrics import RequestMetrics, authorise, exposition
from conveyor.api.routes import (
    alerts,
    analysis,
    artifacts,
    audit,
    deployments,
    dora,
    hooks,
    hosts,
    policy,
    projects,
    runners,
    runs,
    subscriptions,
    teams,
)
from conveyor.api.state import Caller, Coordinator
from conveyor.observability import tracing
from conveyor.storage.database import ping


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """A router's routes, added to the app's own list rather than included.

    FastAPI (0.138 and later) keeps an included router as a node of its own that a
    request walks route by route at about three times the cost of a route of the app's
    own: with a hundred routes, a request that matches the last one took 190 µs
    included and 118 µs flat, in-process (decision 0024). Conveyor's routers take no
    prefix, dependency or tag when they are added, so their routes are complete as they
    are."""
    app.router.routes.extend(router.routes)


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_api(
    lifespan: Lifespan, larger: dict[str, int], metrics_token: str | None = None
) -> FastAPI:
    """The API over the coordinator that `lifespan` puts in `app.state.coordinator`.
    `larger`: the body limits, in bytes, of the paths that take more than the default
    (caches, webhooks, artifacts); `metrics_token` may read `/metrics` besides admins."""
    app = FastAPI(
        title="Conveyor",
        version=__version__,
        lifespan=lifespan,
        telemetry=cast(TelemetryConfig, tracing.fastapi_telemetry()),
    )
    app.add_middleware(BodyLimit, larger=larger)
    app.add_middleware(RequestMetrics)
    errors.install(app)

    # A request is matched against the routes in order: the probes' first, then the
    # runner protocol's and the webhooks' (asked several times per job).
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/stats", tags=["health"])
    async def stats(who: Caller) -> dict[str, int]:
        """This process's counters (admin only): SQL statements sent, deliveries stored
        and the batches that stored them."""
        if not who.is_admin:
            raise ApiError(403, "forbidden", "only the admin reads the server's counters")
        state: Coordinator = app.state.coordinator
        return {
            "pid": os.getpid(),
            "sql_statements": state.db.statements,
            "attempts_finished": state.scheduler.finished,
            "claims": state.scheduler.claims,
            "empty_claims": state.scheduler.empty_claims,
            "deliveries_stored": state.intake.writer.stored,
            "delivery_batches": state.intake.writer.batches,
        }

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics_page(request: Request) -> Response:
        """Conveyor's metrics in Prometheus's text format (docs/metrics.md), for the scrape
        token (`CONVEYOR_METRICS_TOKEN`) or an admin token."""
        state: Coordinator = app.state.coordinator
        await authorise(request, state.db, metrics_token)
        return exposition()

    @app.get("/readyz", tags=["health"])
    async def readyz() -> dict[str, str]:
        state: Coordinator = app.state.coordinator
        async with state.db.transaction() as session:
            await ping(session)
        return {"status": "ready"}

    # Alerts before hooks: /hooks/alertmanager/… is not a source-control provider.
    modules = (
        runners,
        alerts,
        hooks,
        runs,
        teams,
        projects,
        artifacts,
        deployments,
        analysis,
        dora,
        subscriptions,
        audit,
        policy,
        hosts,
    )
    for module in modules:
        add_routes(app, module.router)
    add_routes(app, projects.retry_router)
    contract.install(app)

    return app
