"""The bodies of the agent protocol (`/api/v1/agent/...`): a `conveyor agent` on every
host dials out to the coordinator, registers its host, and long-polls for what the host
should run. Every call carries the host token; every call after `join` carries the
host's fence, and one with an older fence is refused (409): the host registered since.

join      Join                      ─▶ Joined
desired   (long poll, renews lease) ─▶ Desired
report    Report                    ─▶ 204 (renews lease)
artifacts GET by digest (Range)     ─▶ the artifact's bytes
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from conveyor.pipeline.units import LabelKey
from conveyor.protocol import patterns

PROTOCOL = 1
"""The agent protocol's version: a coordinator refuses an agent of another one by name."""
LEASE_S = 15.0
"""How long a host's lease lasts after each call of its agent."""
POLL_S = 5.0
"""The longest a `desired` long poll waits: an idle agent renews its lease this often."""
HOST_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
MAX_INT = 2**31 - 1
"""Fences, generations and incarnations are 32-bit integers in the database."""
MAX_BIGINT = 2**53
"""Sizes and counts: within what a JSON number holds exactly (and a 64-bit column)."""


def _address(value: str) -> str:
    """An IPv4 address (where the host's instances listen), as Python writes it."""
    return str(ipaddress.IPv4Address(value))


class AgentRequest(BaseModel):
    """A body an agent sends: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class AgentReply(BaseModel):
    """A body an agent reads: unknown fields are ignored (a newer coordinator may add
    some)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Join(AgentRequest):
    """An agent registers its host (again, after its own restart or a lost lease)."""

    name: str = Field(pattern=HOST_NAME, min_length=1, max_length=200)
    address: Annotated[
        str, Field(max_length=15, pattern=patterns.IPV4_ADDRESS), AfterValidator(_address)
    ]
    """The IPv4 address its instances listen on, where routers reach them."""
    labels: dict[LabelKey, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=50
    )
    slots: int | None = Field(None, ge=1, le=10_000)
    """How many instances it may run (None: no limit)."""
    memory: int | None = Field(None, ge=0, le=MAX_BIGINT)
    """Bytes its instances may take in all (None: no limit)."""
    router: bool = False
    """It runs HAProxy for environments' traffic too."""
    version: str = Field("", max_length=40)
    protocol: int = PROTOCOL


class Joined(AgentReply):
    host_id: uuid.UUID
    fence: int
    """Sent with every later call: a newer registration of this host makes it stale."""
    generation: int
    lease_s: float
    poll_s: float


class HealthProbe(AgentReply):
    """How the agent checks a starting instance: GET `path` on its port."""

    path: str = "/healthz"
    timeout: float = 2.0


class DesiredInstance(AgentReply):
    """One instance the host should run."""

    id: uuid.UUID
    digest: str
    """The artifact to run it from (fetched by digest, unpacked once per host)."""
    command: str
    env: dict[str, str] = Field(default_factory=dict)
    port: int
    incarnation: int = 0
    """Raised by every restart the coordinator asks for: a process of an older one is
    stopped and a new one started."""
    health: HealthProbe = Field(default_factory=HealthProbe)
    log_patterns: list[str] = Field(default_factory=list)
    """Regular expressions whose matching output lines the agent counts (the `logs`
    analysis metrics of the deployment that placed it)."""


class RouteServer(AgentReply):
    """One instance in a route: where the router reaches it, and what it sends it."""

    name: str
    address: str
    port: int
    weight: int
    """0 to 256 (0: checked, sent nothing)."""
    state: str = "ready"
    """ready, or drain (no new requests; open ones finish)."""


class RouteHealth(AgentReply):
    path: str = "/healthz"
    interval_ms: int = 1000
    timeout_ms: int = 2000
    fall: int = 3


class DesiredRoute(AgentReply):
    """One environment's routing, as every router host of its team holds it: frontends
    on `port` (and `preview_port`) of the router host's address, the servers of slots
    `a` and `b`, and the split (`share_b` of 10,000 to slot b)."""

    key: str
    version: int
    """Raised by every change of the route: a router reports the one it holds."""
    port: int
    preview_port: int
    health: RouteHealth = Field(default_factory=RouteHealth)
    canary_slot: str = "b"
    share_b: int = 0
    servers: dict[str, list[RouteServer]] = Field(default_factory=dict)


class DesiredTask(AgentReply):
    """A deployment's `pre_deploy` commands, run once on this host, in order, in the
    artifact's directory with the service's environment; the first that fails (or
    outlives its timeout) ends the task."""

    id: uuid.UUID
    """The deployment's."""
    digest: str
    commands: list[tuple[str, float]]
    env: dict[str, str] = Field(default_factory=dict)


class Desired(AgentReply):
    """What the host should run now; `generation` is raised by every change of it. An
    instance the agent runs that is not here is stopped (SIGTERM, then SIGKILL after
    `stop_grace_s`). A router host gets every route it should hold too."""

    host_id: uuid.UUID
    fence: int
    generation: int
    draining: bool = False
    instances: list[DesiredInstance] | None = None
    """Every instance it should run; None when `generation` is the one the agent asked
    with (nothing changed: it keeps what it has)."""
    routes: list[DesiredRoute] | None = None
    """On a router host: every route it should hold (None as for `instances`, and on a
    host that is not a router)."""
    tasks: list[DesiredTask] | None = None
    """The tasks to run (None as for `instances`)."""
    stop_grace_s: float = 5.0


class ObservedInstance(AgentRequest):
    """One instance as its agent sees it."""

    id: uuid.UUID
    incarnation: int = Field(ge=0, le=MAX_INT)
    pid: int | None = Field(None, ge=1, le=MAX_INT)
    started: str | None = None
    """The process's start time (a reused pid does not match it)."""
    running: bool
    exit_code: int | None = None
    """How its last process ended, when it has ended."""
    healthy: bool | None = None
    """Its health path answered 2xx on the last probe (None: not probed yet)."""
    rss: int | None = Field(None, ge=0, le=MAX_BIGINT)
    """Resident memory of its process, bytes."""
    cpu_s: float | None = Field(None, ge=0)
    """CPU time its process has used, seconds."""
    log_lines: int = Field(0, ge=0, le=MAX_BIGINT)
    log_matches: dict[str, int] = Field(default_factory=dict, max_length=20)
    """Per pattern of `log_patterns`: how many of its output lines matched so far."""
    problem: str | None = Field(None, max_length=2000)
    """Why it cannot run (an artifact of another digest, a failed fetch)."""


class ObservedServer(AgentRequest):
    """One server of a route as the router host's HAProxy sees it (`show stat`)."""

    name: str = Field(max_length=200)
    backend: str = Field(max_length=200)
    status: str = Field(max_length=40)
    check: str = Field(max_length=40)
    weight: int = Field(ge=0, le=MAX_INT)
    sessions: int = Field(0, ge=0, le=MAX_BIGINT)
    queued: int = Field(0, ge=0, le=MAX_BIGINT)
    requests: int = Field(0, ge=0, le=MAX_BIGINT)
    errors_5xx: int = Field(0, ge=0, le=MAX_BIGINT)
    since_s: int = Field(0, ge=0, le=MAX_BIGINT)


class ObservedRoute(AgentRequest):
    """One route as the router host holds it."""

    key: str = Field(max_length=40)
    version: int = Field(ge=0, le=MAX_INT)
    """The route's version it applied last."""
    servers: list[ObservedServer] = Field(default_factory=list, max_length=1000)
    problem: str | None = Field(None, max_length=2000)
    """Why it could not apply the route (HAProxy refused its config, a port is taken)."""


class ServedSecond(AgentRequest):
    """The requests one backend of a route answered in one second, through this router:
    counts by HTTP status, and a latency histogram that sums across routers (bucket
    `i` holds the requests of 1.1^(i-1) ms to 1.1^i ms; bucket 0 those under 1 ms)."""

    key: str = Field(max_length=40)
    side: str = Field(pattern=r"^[ab]$")
    preview: bool = False
    second: int = Field(ge=0, le=MAX_BIGINT)
    """Unix time, whole seconds."""
    statuses: dict[str, int] = Field(max_length=100)
    latency: dict[str, int] = Field(max_length=400)


class ObservedTask(AgentRequest):
    """How a task ended (reported while it is still desired)."""

    id: uuid.UUID
    exit_code: int = Field(ge=-1, le=255)
    """0: every command passed; 124: the failed one timed out; -1: it ended unexplained."""
    command: str = Field("", max_length=10_000)
    """The command that failed."""
    output: str = Field("", max_length=20_000)
    """The tail of the task's output."""


class Report(AgentRequest):
    """What the host runs, as its agent sees it (sent when something changed); a router
    host's routes and the requests they served since its last report."""

    fence: int = Field(ge=1, le=MAX_INT)
    generation: int = Field(ge=0, le=MAX_INT)
    instances: list[ObservedInstance] = Field(default_factory=list, max_length=1000)
    routes: list[ObservedRoute] | None = Field(None, max_length=1000)
    """A router host's routes (None: not a router)."""
    served: list[ServedSecond] = Field(default_factory=list, max_length=10_000)
    tasks: list[ObservedTask] = Field(default_factory=list, max_length=100)
