"""The API's published contract made true: every error answer Conveyor gives is in the
OpenAPI document with the body it really has (`{error, detail}`), and a method a path does
not take is answered 405 with `Allow` naming the ones it does.

FastAPI documents only the success and a 422 in its own validation-error shape; Conveyor's
errors all come from `conveyor.api.errors` in one shape, for reasons any operation may
meet (no token, another team's object, the rate limit, the database away). They are added
here to each operation by what it can meet, so that a client generated from the document,
or a fuzzer holding the server to it (schemathesis, in `make test`), sees the truth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.routing import Match, Route

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {
            "type": "string",
            "description": "A short code: invalid_request, unauthorized, forbidden, "
            "not_found, conflict, rate_limited, unavailable, …",
        },
        "detail": {
            "description": "What is wrong, in words; for a request whose form is wrong "
            "(422 invalid_request), a list of {loc, message}, one per problem.",
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "message"],
                        "properties": {
                            "loc": {"type": "array", "items": {"type": "string"}},
                            "message": {"type": "string"},
                        },
                    },
                },
                {"type": "object"},
            ],
        },
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}

REASONS = {
    400: "The request's content is not what it says it is (a digest, a media type)",
    401: "No token, or one that is not valid",
    403: "The token's role is too low, or the token is of the wrong kind",
    404: "No such object, or one of another team (never told apart)",
    409: "The object is not in a state that allows this (its message says why)",
    413: "The request's body is larger than allowed",
    422: "The request's form or values are wrong: `detail` says what, and where",
    429: "Too many requests for this token or project; retry after `Retry-After`",
    503: "The database or a needed service is away; retry after `Retry-After`",
}
OPEN = {"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}
"""Paths that take no token."""


def statuses_of(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation can answer, by what it is."""
    if path in OPEN:
        return [503] if path == "/readyz" else []
    found = [401, 403, 429, 503]
    writes = method != "get"
    has_params = bool(operation.get("parameters")) or "{" in path
    if has_params or writes:
        found += [404, 422]
    if writes:
        found += [400, 409]
    if "requestBody" in operation or writes:
        found.append(413)
    return sorted(set(found))


def _document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            responses.pop("422", None)  # FastAPI's HTTPValidationError: not what is sent
            for status in statuses_of(path, method, operation):
                answer: dict[str, Any] = {
                    "description": REASONS[status],
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
                if status in (429, 503):
                    answer["headers"] = RETRY_AFTER
                responses.setdefault(str(status), answer)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install(app: FastAPI, *amend: Callable[[dict[str, Any]], None]) -> None:
    """Publish the OpenAPI document with the error answers documented, then `amend`
    (operation-specific corrections) applied once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = _document_errors(generate())
            for change in amend:
                change(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(app: FastAPI, scope: dict[str, Any]) -> list[str]:
    """Every method some route of `app` takes at the request's path (for `Allow`)."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**scope, "method": next(iter(route.methods))})
            if match is Match.FULL:
                methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
