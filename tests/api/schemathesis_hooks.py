"""Hooks for schemathesis runs against Conveyor (tests/integration/test_api_contract.py).

An Idempotency-Key names one request: sent again with another body it is refused with 422
(the IETF draft's rule), a rule between requests that OpenAPI cannot state. The fuzzer
draws keys like any string, so two different requests would share "0"; each request it
sends gets a key of its own instead (the keys' own rules are tested in tests/api)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import schemathesis
from hypothesis.internal import lambda_sources

_describe = lambda_sources.lambda_description


def _lambda_description(f: Any) -> str:
    """Hypothesis names a filter's lambda by parsing the source file it is in; on
    CPython 3.11.7, `ast.parse` of schemathesis's largest module deep in a generator's
    stack sometimes raises `SystemError: AST constructor recursion depth mismatch`
    (CPython gh-106905), which ended whole runs now and then. The name is only for
    reprs: a plain one serves when the parse fails."""
    try:
        return str(_describe(f))
    except SystemError:
        return "lambda: <source not parsed>"


lambda_sources.lambda_description = _lambda_description


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    for name in list(case.headers or {}):
        if name.lower() == "idempotency-key":
            case.headers[name] = f"fuzz-{uuid.uuid4()}"


@schemathesis.hook("before_call")
def digest_of_the_body(context: Any, case: Any, **kwargs: Any) -> None:
    """An upload's `digest` names the body sent with it (what a client computes); one
    that does not is refused with 400, a rule between two parts of a request that
    OpenAPI cannot state (tested in tests/api/test_artifacts.py)."""
    if case.operation.path.endswith("/artifacts") and (case.query or {}).get("digest"):
        body = getattr(case.body, "data", case.body)  # schemathesis wraps bytes as Binary
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            body = b""
        case.query["digest"] = "sha256:" + hashlib.sha256(body).hexdigest()
