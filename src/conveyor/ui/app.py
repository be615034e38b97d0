"""The UI's pages at `/` and their static files (htmx and its SSE extension, vendored:
no Node build step), added to the API's app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from conveyor.api.app import add_routes
from conveyor.ui.routes import HERE, router


def add_pages(app: FastAPI) -> None:
    add_routes(app, router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
