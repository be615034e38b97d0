"""Request limits: bodies over a size get 413 before they are read; API tokens and
projects' webhooks over their rate get 429 with Retry-After (the `limits` library)."""

from __future__ import annotations

import json
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api.errors import ApiError

MAX_BODY_BYTES = 2 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: 413 when Content-Length, or the bytes actually sent, pass the limit."""

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, larger: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.larger = larger or {}
        """Paths containing one of these parts take the larger limit (cache uploads)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next(
            (size for part, size in self.larger.items() if part in scope["path"]), self.limit
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        seen = 0
        refused = False

        async def counting() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not refused:
                refused = True
                await self._refuse(send, limit)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once refused, what the app still says is dropped
                await send(message)

        try:
            await self.app(scope, counting, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps(
            {"error": "too_large", "detail": f"request bodies are at most {limit} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RateLimit:
    """Requests per key (an API token, a project's hooks) with the `limits` library: in
    memory (each replica counts its own) or in Redis (`CONVEYOR_REDIS_URL`, shared by all
    replicas). Runners are not limited here: their traffic (heartbeats, log chunks) is
    paced by the protocol itself."""

    def __init__(
        self, rate: str, *, scope: str = "api-token", redis_url: str | None = None
    ) -> None:
        self.item: RateLimitItem = parse(rate)
        self.rate = rate
        self.scope = scope
        uri = "async+memory://" if not redis_url else "async+" + redis_url.removeprefix("async+")
        storage = storage_from_string(uri)
        assert isinstance(storage, Storage)
        self.limiter = MovingWindowRateLimiter(storage)

    async def allow(self, key: str) -> bool:
        return bool(await self.limiter.hit(self.item, self.scope, key))

    async def retry_after(self, key: str) -> int:
        """Whole seconds until the window lets the key in again (at least 1)."""
        stats = await self.limiter.get_window_stats(self.item, self.scope, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def check(self, key: str, what: str) -> None:
        """Raise 429 with Retry-After when `key` is over the rate."""
        if await self.allow(key):
            return
        wait = await self.retry_after(key)
        raise ApiError(
            429,
            "rate_limited",
            f"{what} is limited to {self.rate}; retry in {wait}s",
            headers={"Retry-After": str(wait)},
        )
