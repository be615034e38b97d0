"""Every error is JSON `{error, detail}` with the right status; a 500 is a bug."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from conveyor.api.contract import allowed_methods
from conveyor.artifacts.blobs import BlobError
from conveyor.deploy.requests import DeployRefused
from conveyor.policy.gates import PolicyRefused
from conveyor.protocol.errors import NotYours, StaleLease
from conveyor.storage.database import UNAVAILABLE
from conveyor.storage.deployments import PhaseChangeRejected
from conveyor.storage.jobs import TransitionRejected
from conveyor.storage.secrets import SecretKeyError

log = logging.getLogger("conveyor.api")
RETRY_AFTER_S = 5


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, detail: Any, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def _json(
    status: int, error: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status, exc.error, exc.detail, exc.headers)


async def _database_down(_: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached: 503, so that providers and clients retry."""
    log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
    return _json(
        503,
        "unavailable",
        "the database is unavailable; retry later",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [{"loc": [str(p) for p in e["loc"]], "message": e["msg"]} for e in exc.errors()]
    return _json(422, "invalid_request", detail)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = allowed_methods(request.app, dict(request.scope))
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
        return _json(405, "method_not_allowed", detail, headers)
    if exc.status_code == 404:
        return _json(404, "not_found", f"no route {request.url.path}", headers or None)
    return _json(exc.status_code, "http_error", exc.detail, headers or None)


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return _json(409, "conflict", str(exc))


async def _not_yours(_: Request, exc: Exception) -> JSONResponse:
    return _json(404, "not_found", str(exc))


async def _wrong_key(_: Request, exc: Exception) -> JSONResponse:
    """A stored secret does not open with this replica's key: an operator must give every
    replica the same CONVEYOR_SECRET_KEY. 503, so that webhook senders retry."""
    log.error("%s: every replica needs the same CONVEYOR_SECRET_KEY", exc)
    return _json(
        503,
        "misconfigured",
        "this server cannot open its stored secrets (CONVEYOR_SECRET_KEY differs)",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


async def _blob(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BlobError)
    return _json(exc.status, type(exc).__name__.lower(), str(exc))


async def _refused(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DeployRefused | PolicyRefused)
    error = {403: "forbidden", 404: "not_found", 409: "conflict", 422: "invalid_request"}.get(
        exc.status, "refused"
    )
    return _json(exc.status, error, str(exc))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(StaleLease, _conflict)
    app.add_exception_handler(TransitionRejected, _conflict)
    app.add_exception_handler(NotYours, _not_yours)
    app.add_exception_handler(SecretKeyError, _wrong_key)
    app.add_exception_handler(BlobError, _blob)
    app.add_exception_handler(DeployRefused, _refused)
    app.add_exception_handler(PolicyRefused, _refused)
    app.add_exception_handler(PhaseChangeRejected, _conflict)
    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, _database_down)
