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


class Desired(AgentReply):
    """What the host should run now; `generation` is raised by every change of it. An
    instance the agent runs that is not here is stopped (SIGTERM, then SIGKILL after
    `stop_grace_s`)."""

    host_id: uuid.UUID
    fence: int
    generation: int
    draining: bool = False
    instances: list[DesiredInstance] | None = None
    """Every instance it should run; None when `generation` is the one the agent asked
    with (nothing changed: it keeps what it has)."""
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
    problem: str | None = Field(None, max_length=2000)
    """Why it cannot run (an artifact of another digest, a failed fetch)."""


class Report(AgentRequest):
    """What the host runs, as its agent sees it (sent when something changed)."""

    fence: int = Field(ge=1, le=MAX_INT)
    generation: int = Field(ge=0, le=MAX_INT)
    instances: list[ObservedInstance] = Field(default_factory=list, max_length=1000)
