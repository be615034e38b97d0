"""Bearer tokens: who is calling, and what they may see.

Tokens are random (`secrets.token_urlsafe`) with a prefix that says their kind; only their
sha256 is stored. A token of another team gets 404 for anything of this team, never 403,
so that the existence of another team's objects does not leak.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from datetime import timedelta

from fastapi import Request

from conveyor.api.errors import ApiError
from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.principal import Principal
from conveyor.domain.roles import Role
from conveyor.storage import tokens
from conveyor.storage.database import Session

ADMIN_PREFIX = "cvy_admin_"
TEAM_PREFIX = "cvy_team_"
REGISTRATION_PREFIX = "cvy_reg_"
RUNNER_PREFIX = "cvy_runner_"
HOST_PREFIX = "cvy_host_"


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


SEEN_EVERY = timedelta(seconds=15)
"""How stale a runner's `last_seen_at` may get before a request refreshes it."""


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send `Authorization: Bearer <token>`")
    return token.strip()


async def principal_for(session: Session, token: str) -> Principal:
    digest = token_hash(token)
    if token.startswith(RUNNER_PREFIX):
        runner = await tokens.runner(session, digest)
        if runner is None:
            raise ApiError(401, "unauthorized", "unknown runner token")
        now = utcnow()
        if now - as_utc(runner.last_seen_at) > SEEN_EVERY:  # not a write per request
            await tokens.seen(session, runner.id, now)
        return Principal(role=Role.VIEWER, team_id=runner.team_id, runner=runner, subject=digest)
    row = await tokens.api_token(session, digest)
    if row is None:
        raise ApiError(401, "unauthorized", "unknown or revoked token")
    return Principal(role=Role.parse(row.role), team_id=row.team_id, subject=digest, name=row.name)


class PrincipalCache:
    """Who a token belongs to, kept for `ttl_s` per token, so a busy runner's requests
    (claim, log, finish) do not each cost a lookup. Tokens are never revoked in place
    (a new one is made instead), so the only staleness is a runner's `last_seen_at`,
    which the next lookup refreshes. Bounded: the least recently used entry goes first."""

    def __init__(self, ttl_s: float = 5.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._found: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def get(self, token: str) -> Principal | None:
        digest = token_hash(token)
        entry = self._found.get(digest)
        if entry is None or entry[0] < time.monotonic() - self.ttl_s:
            return None
        self._found.move_to_end(digest)
        return entry[1]

    def put(self, who: Principal) -> None:
        self._found[who.subject] = (time.monotonic(), who)
        self._found.move_to_end(who.subject)
        while len(self._found) > self.size:
            self._found.popitem(last=False)
