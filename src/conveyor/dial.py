"""How a runner or a host agent reaches the coordinator: over HTTP, dialing out, with
several replicas' URLs to fail over between, and answers parsed into the protocol's
bodies (an answer that does not fit is an HTTP error like any other)."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from conveyor.observability import tracing

log = logging.getLogger("conveyor.dial")

Reply = TypeVar("Reply", bound=BaseModel)


def reply_as(model: type[Reply], response: httpx.Response) -> Reply:
    """The coordinator's answer as `model`. An answer that does not fit raises
    httpx.DecodingError, so that callers retry it like any failed call, not crash."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise httpx.DecodingError(
            f"{response.request.url.path}: the coordinator's answer does not fit "
            f"{model.__name__}: {exc.error_count()} error(s), first: {exc.errors()[0]['msg']}",
            request=response.request,
        ) from exc


def servers(spec: str) -> list[str]:
    """`--server` may list several coordinator replicas, comma-separated."""
    urls = [u.strip().rstrip("/") for u in spec.split(",") if u.strip()]
    if not urls:
        raise ValueError("no coordinator URL given")
    return urls


class Dialer:
    """An HTTP client with a bearer token: a request that cannot reach one replica is
    sent to the next (which then comes first)."""

    def __init__(self, server: str, token: str, read_s: float = 75.0) -> None:
        self.urls = servers(server)
        self.http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(15.0, read=read_s),
            event_hooks={"request": [tracing.inject]},
            # An artifact may be served from object storage (a presigned URL); httpx
            # drops the token when a redirect leaves the coordinator's origin.
            follow_redirects=True,
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(len(self.urls)):
            try:
                return await self.http.request(method, self.urls[0] + path, **kwargs)
            except httpx.TransportError:
                if attempt == len(self.urls) - 1:
                    raise
                log.warning("coordinator %s unreachable; trying %s", self.urls[0], self.urls[1])
                self.urls.append(self.urls.pop(0))
        raise AssertionError("unreachable")  # pragma: no cover
