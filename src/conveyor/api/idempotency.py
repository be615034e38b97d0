"""`Idempotency-Key` on POSTs that act (trigger; later deploy and rollback), with the
semantics of the IETF draft "The Idempotency-Key HTTP Header Field":

- a repeat of a completed request returns the stored response (successes and 4xx errors);
- a repeat while the first is still being answered gets 409;
- the same key with a different request body gets 422;
- keys are scoped to the caller's token and the route, and expire after 24 hours: a
  key used again after that starts afresh, and the hourly housekeeping deletes expired
  records (`purge_expired`).

The key is an opaque string of at most 255 characters, sent bare or as a quoted
structured-field string (`"8e03…"`). docs/ids.md explains the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from conveyor.api.errors import ApiError, answer_of
from conveyor.api.state import Coordinator
from conveyor.domain.errors import Refused
from conveyor.domain.principal import Principal
from conveyor.storage import idempotency as records
from conveyor.storage.database import Database
from conveyor.storage.idempotency import KeyOf

KEY_TTL = timedelta(hours=24)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


async def purge_expired(db: Database, now: datetime) -> int:
    """Delete every record older than KEY_TTL; returns how many."""
    return await records.purge_older(db, now - KEY_TTL)


def parse_key(raw: str) -> str:
    """The key without sf-string quotes; 400 when it is empty, too long or not printable."""
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY.match(key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 printable ASCII characters (quoted or bare)",
        )
    return key


def fingerprint(route: str, body: Any) -> str:
    """sha256 of the route and the canonical JSON of the request body."""
    canonical = json.dumps([route, jsonable_encoder(body)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def once(
    state: Coordinator,
    who: Principal,
    route: str,
    raw_key: str,
    body: BaseModel,
    status: int,
    act: Callable[[], Awaitable[BaseModel]],
) -> JSONResponse:
    """Run `act` once per (caller, route, key); repeats get the stored answer."""
    key = parse_key(raw_key)
    print_ = fingerprint(route, body.model_dump(mode="json"))
    of = KeyOf(who.subject, "POST", route, key)
    if not await records.claim(state.db, of, print_, KEY_TTL):
        return await _repeat(state, of, print_)
    try:
        result = await act()
    except (ApiError, Refused) as exc:
        answer = _answer(exc)
        if answer[0] >= 500:
            await records.forget(state.db, of)
            raise
        await records.answer(state.db, of, answer[0], answer[1])
        raise
    except BaseException:
        await records.forget(state.db, of)
        raise
    payload = result.model_dump(mode="json")
    await records.answer(state.db, of, status, payload)
    return JSONResponse(payload, status_code=status, headers={"Idempotency-Key": key})


def _answer(exc: ApiError | Refused) -> tuple[int, dict[str, Any]]:
    """The status and body a refused request was answered with (as api/errors.py)."""
    if isinstance(exc, ApiError):
        return exc.status, {"error": exc.error, "detail": exc.detail}
    status, error = answer_of(exc)
    return status, {"error": error, "detail": exc.detail if exc.detail is not None else str(exc)}


async def _repeat(state: Coordinator, of: KeyOf, print_: str) -> JSONResponse:
    record = await records.find(state.db, of)
    if record is None:  # expired and removed between our insert and this read
        raise ApiError(409, "conflict", "the request with this Idempotency-Key just expired")
    if record.fingerprint != print_:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
    if record.status_code is None or record.response is None:
        raise ApiError(
            409,
            "request_in_progress",
            "the first request with this Idempotency-Key is still being answered",
        )
    return JSONResponse(
        record.response,
        status_code=record.status_code,
        headers={"Idempotency-Key": of.key, "Idempotent-Replayed": "true"},
    )
