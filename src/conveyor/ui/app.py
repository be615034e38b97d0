"""The coordinator's app with the UI: the API's app, the UI's pages at `/` and their
static files (htmx and its SSE extension, vendored: no Node build step)."""

from __future__ import annotations

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


def app_from_environment() -> FastAPI:
    """For `uvicorn --factory` with several workers: the settings from the environment."""
    return create_app(server_config(Settings()))
