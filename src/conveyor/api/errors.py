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
from conveyor.domain.errors import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Malformed,
    NotFound,
    Refused,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from conveyor.storage.database import UNAVAILABLE
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


ANSWERS: tuple[tuple[type[Refused], int, str], ...] = (
    (Malformed, 400, "bad_request"),
    (Unauthenticated, 401, "unauthorized"),
    (NotFound, 404, "not_found"),
    (Forbidden, 403, "forbidden"),
    (Conflict, 409, "conflict"),
    (Invalid, 422, "invalid_request"),
    (Gone, 410, "gone"),
    (TooLarge, 413, "too_large"),
    (Unavailable, 503, "unavailable"),
)
"""How the API answers each kind of refusal (domain.errors): the one place a use
case's error gets its HTTP status."""


def answer_of(exc: Refused) -> tuple[int, str]:
    """The status and error code that answer a refusal (its own code, if it has one)."""
    for kind, status, error in ANSWERS:
        if isinstance(exc, kind):
            return status, exc.code or error
    return 400, exc.code or "refused"


async def _refused(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    status, error = answer_of(exc)
    return _json(status, error, exc.detail if exc.detail is not None else str(exc))


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
    status, _error = answer_of(exc)
    return _json(status, type(exc).__name__.lower(), str(exc))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(SecretKeyError, _wrong_key)
    app.add_exception_handler(BlobError, _blob)
    app.add_exception_handler(Refused, _refused)
    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, _database_down)
