"""The coordinator's ASGI app: the API (api/app.py) with the UI's pages (ui/app.py),
over one replica (components.py) that its lifespan starts and stops."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from conveyor.api.app import create_api
from conveyor.config import Settings
from conveyor.coordinator.components import running
from conveyor.coordinator.config import ServerConfig, server_config
from conveyor.ui.app import add_pages

MB = 1024 * 1024


def create_app(config: ServerConfig, *, pages: bool = True) -> FastAPI:
    """The app of one replica; without `pages`, the API alone."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(config) as state:
            app.state.coordinator = state
            yield

    larger = {
        "/cache/": config.cache_quota_mb * MB,
        "/hooks/": config.hook_body_mb * MB,
        "/artifacts": config.artifact_max_mb * MB,
    }
    app = create_api(lifespan, larger, config.metrics_token)
    if pages:
        add_pages(app)
    return app


def serving_app(config: ServerConfig) -> FastAPI:
    """The app of a `conveyor serve` process. Once it is built, what starting made (the
    modules, the app and its routes: some 200,000 objects that live as long as the
    process) is moved out of the garbage collector's sight (`gc.freeze`), so that a full
    collection under load walks only what the work makes: 130 ms less each. Not for
    tests, which build many apps in one process."""
    app = create_app(config)
    gc.collect()
    gc.freeze()
    return app


def app_from_environment() -> FastAPI:
    """For `uvicorn --factory` with several workers: the settings from the environment."""
    return serving_app(server_config(Settings()))
