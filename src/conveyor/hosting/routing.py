"""The traffic router's contract, and the routing it is asked to hold.

Every environment has two slots, `a` and `b`. One is stable, the other takes the canary
(or the blue-green preview); `share_b` says how much of the traffic slot `b` gets, in
1/10,000, so a split does not depend on instance counts. Promotion relabels the slots
without touching the split, so it moves no traffic by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from conveyor.domain.traffic import Served


class RouterError(Exception):
    """The router is missing, refused its config, or answered a command with an error."""


SHARE_SCALE = 10_000
"""Traffic shares are integers out of this: 1 = 0.01 %."""


class ServerState(Enum):
    """What the router should do with one instance."""

    READY = "ready"
    """Takes traffic at its weight once its health check passes."""
    DRAIN = "drain"
    """Takes no new traffic; its open connections finish."""


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    port: int
    weight: int
    """0 to 256; 0 means in the router and health-checked, but sent nothing yet."""
    state: ServerState = ServerState.READY
    address: str = "127.0.0.1"
    """Where the instance listens: its host's address."""


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How the router checks an environment's instances: the runtime's `health` block."""

    path: str = "/healthz"
    interval_ms: int = 1000
    """Between checks of a server that is up (and steady)."""
    timeout_ms: int = 2000
    """A check that has not answered by then has failed."""
    fall: int = 3
    """Consecutive failed checks that take a server out of the traffic."""


@dataclass(frozen=True)
class Route:
    """What one environment's router config must say."""

    key: str
    """A short stable name for the environment in the router (letters and digits)."""
    port: int
    preview_port: int
    health: HealthCheck
    canary_slot: str
    share_b: int
    servers: dict[str, tuple[Server, ...]] = field(default_factory=dict)
    """Per slot (`a`, `b`)."""
    team: uuid.UUID | None = None
    """Held by this team's router hosts (through their agents); None: by the
    coordinator's own router."""

    def slot(self, name: str) -> tuple[Server, ...]:
        return self.servers.get(name, ())


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """One server as the router sees it."""

    name: str
    backend: str
    status: str
    """UP, DOWN, DRAIN, MAINT, …"""
    check: str
    """The last health check: L7OK, L4CON, INI, … HAProxy's `show stat` puts `* ` before it
    while the next check is in progress (`* L7OK`); `check_result` is without it."""
    weight: int
    sessions: int
    queued: int
    requests: int
    errors_5xx: int
    since_s: int = 0
    """Seconds since its status last changed (UP to DOWN or back)."""

    @property
    def check_result(self) -> str:
        """The last completed check's result, whether or not another is in progress."""
        return self.check.removeprefix("*").strip()

    @property
    def healthy(self) -> bool:
        return self.check_result.startswith("L7OK") and self.status.startswith(("UP", "DRAIN"))

    @property
    def takes_traffic(self) -> bool:
        """HAProxy may send it requests, or still holds some of its sessions: stopping it
        now would cut them. (A server whose check just failed is still UP until `fall`
        checks in a row have failed.)"""
        routed = self.status.startswith(("UP", "NOLB", "DRAIN")) and self.weight > 0
        return routed or self.sessions > 0


class TrafficRouter(Protocol):
    """Sends environments' traffic to their instances. Every method is idempotent and
    level-triggered: it compares what the router holds with what it is asked to hold and
    changes only the difference, so calling it again after a crash or a router restart
    converges. Calls for different environments may run concurrently."""

    def running(self) -> bool:
        """Whether the router process is up (cheap: called on every pass)."""
        ...

    async def sync(self, routes: Sequence[Route]) -> None:
        """Make sure the router runs with a frontend per route; restarts it if it died."""
        ...

    async def apply(self, route: Route, seen: Mapping[str, ServerStatus] | None = None) -> None:
        """Hold `route`: its servers, their weights and states, and the split. `seen` is
        what `status` answered this pass, if nothing changed since (saves reading it
        again)."""
        ...

    async def status(self, key: str) -> dict[str, ServerStatus]:
        """The route's servers as the router sees them, by name."""
        ...

    async def served(self, route: str, side: str, start: float, end: float) -> list[Served]:
        """The requests the route's backend `side` answered, reported within [start, end)
        (wall clock): the `router` analysis provider's data (analysis.providers.base's
        RequestSource): what the router's request log collected, or, for routes held by
        router hosts, what their agents reported."""
        ...

    async def stop(self) -> None:
        """Stop the router process (tests, `conveyor down`)."""
        ...
