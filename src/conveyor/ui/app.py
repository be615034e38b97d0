"""The coordinator's app with the UI: the API's app, the UI's pages at `/` and their
static files (htmx and its SSE extension, vendored: no Node build step)."""

from __future__ import annotations

import gc

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from conveyor.api.app import add_routes
from conveyor.api.app import create_app as create_api
from conveyor.api.coordinator import ServerConfig, server_config
from conveyor.config import Settings
from conveyor.ui.routes import HERE, router


def create_app(config: ServerConfig) -> FastAPI:
    app = create_api(config)
    add_routes(app, router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
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
