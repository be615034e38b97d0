"""Requests as a traffic router served them: what HAProxy's request log yields and the
`router` analysis provider judges."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Served:
    """One request as the traffic router served it."""

    at: float
    """When the router reported it (wall clock, seconds)."""
    status: int
    """The HTTP status sent to the client (HAProxy's 503/504 for a refused or timed-out
    server; -1 when the client went away before an answer)."""
    ms: float
    """Total active time of the request in the router, milliseconds."""
    preview: bool = False
    """Came in through the preview URL rather than the environment's URL."""

    @property
    def failed(self) -> bool:
        """A server-side failure: 5xx, or no answer (a refused or timed-out server)."""
        return self.status >= 500
