"""The planner's vocabulary: a deployment as the planner sees it (`Rollout` and its
`Step`s), the environment outside any deployment (`Settled`), one live instance as the
driver saw it (`Seen`), the world a pass decides on (`World`, with its analyses' standing
in `Judged` and what is due in `Due`), the actions it may name (`Act`, `Action`), and the
split as people read it (`Traffic`). Plain values with no behaviour of their own; the
rules that read them are in planner/.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from conveyor.domain.analysis import AnalysisPhase
from conveyor.domain.deploy import DriverRequest, InstanceState, PauseReason, Phase
from conveyor.domain.policy import Gate
from conveyor.hosting.routing import SHARE_SCALE, ServerStatus
from conveyor.hosting.target import TaskResult
from conveyor.pipeline.deploy import SCALE_DOWN_DELAY_S


class Kind(StrEnum):
    ROLLING = "rolling"
    BLUE_GREEN = "blue-green"
    CANARY = "canary"
    SWITCH = "switch"
    """A rollback to the revision still warm in the other slot: a traffic switch."""


class StepKind(StrEnum):
    WEIGHT = "weight"
    PAUSE = "pause"
    ANALYSIS = "analysis"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    weight: float | None = None
    seconds: float | None = None
    """A pause's length (None waits until promoted), or how long an analysis judges."""
    template: str | None = None
    """An analysis step's template; None waits for `promote`."""
    preview: bool = False
    """An analysis of the preview's own requests (blue-green, before any traffic)."""

    def describe(self) -> str:
        if self.kind is StepKind.WEIGHT:
            return f"weight {self.weight:g}%"
        if self.kind is StepKind.PAUSE:
            return "pause until promoted" if self.seconds is None else f"pause {self.seconds:g}s"
        if self.template is None:
            return "analysis (until promoted)"
        where = " of the preview" if self.preview else ""
        return f"analysis {self.template}{where} for {self.seconds or 0:g}s"


@dataclass(frozen=True)
class Rollout:
    """The active deployment, as the planner sees it (deploy.records.plan_of)."""

    number: int
    digest: str
    kind: Kind
    steps: tuple[Step, ...]
    replicas: int
    phase: Phase
    step: int
    step_started: datetime | None
    surge: int = 1
    unavailable: int = 0
    scale_down_delay: float = SCALE_DOWN_DELAY_S
    request: DriverRequest | None = None
    requested_by: str | None = None
    """Who gave `request` (a person's promote or abort)."""
    paused_by_user: bool = False
    pause_reason: PauseReason | None = None
    max_restarts: int = 3
    health_failures: int = 3
    start_period: float = 10.0
    background: str | None = None
    """A template judged from the canary's first traffic until promotion."""
    bake: str | None = None
    """A template judged after promotion while the old revision is warm."""
    bake_s: float = 0.0
    pre_deploy: bool = False
    """Its runtime has `pre_deploy` commands to run before its first instance starts."""
    pre_deploy_state: str | None = None
    """running | passed | failed, or None before they start."""
    released: bool = True
    """It has passed its gate (domain.policy) and may change the environment."""
    gate: Gate = field(default_factory=Gate)
    """What its gate sees (the stop-the-line switch holds a released one too)."""


@dataclass(frozen=True)
class Seen:
    """One live instance, observed this pass."""

    id: str
    digest: str
    slot: str
    state: InstanceState
    alive: bool
    probe_ok: bool | None = None
    """The direct health probe of a starting instance (None: not probed)."""
    router: ServerStatus | None = None
    restarts: int = 0
    health_failures: int = 0
    draining_s: float | None = None
    leaving: bool = False
    """Its host is draining or lost: a replacement goes elsewhere, then it leaves."""

    @property
    def serving(self) -> bool:
        """In the router, healthy and weighted: it takes its slot's traffic."""
        return (
            self.state is InstanceState.READY
            and self.router is not None
            and self.router.healthy
            and self.router.weight > 0
        )

    @property
    def takes_traffic(self) -> bool:
        """Ready, and the router may still send it requests or holds its sessions."""
        return (
            self.state is InstanceState.READY
            and self.router is not None
            and self.router.takes_traffic
        )

    @property
    def router_down(self) -> bool:
        return (
            self.state is InstanceState.READY
            and self.router is not None
            and self.router.status.startswith("DOWN")
        )


@dataclass(frozen=True)
class Settled:
    """The environment outside any deployment: its stable revision."""

    stable_slot: str = "a"
    canary_share: int = 0
    revision: int = 0
    digest: str | None = None
    replicas: int = 0
    warm_digest: str | None = None
    warm_until: datetime | None = None
    drain_s: float = 10.0


@dataclass(frozen=True)
class World:
    env: Settled
    plan: Rollout | None
    instances: tuple[Seen, ...]
    now: datetime
    pending: tuple[int, ...] = ()
    """Numbers of queued deployments, oldest first."""
    newest_wins: bool = False
    pinned: frozenset[str] = frozenset()
    analyses: Mapping[str, Judged] = field(default_factory=dict)
    """The active deployment's analysis runs by key (analyses_due), as last judged."""
    task: TaskResult | None = None
    """How the active deployment's pre_deploy task ended, once it has."""
    next_gate: Gate | None = None
    """What the gate of the first queued deployment sees (it begins released when the
    gate is open, and waits at it otherwise)."""
    no_room: str | None = None
    """Why no host can take a new instance of the active deployment now (placement's
    reason); None when one can, or when instances run on the coordinator's machine."""


@dataclass(frozen=True)
class Judged:
    """Where one analysis run of the active deployment stands."""

    phase: AnalysisPhase
    template: str
    reason: str = ""


@dataclass(frozen=True)
class Due:
    """An analysis the active deployment needs now."""

    key: str
    """`step-<i>`, `background` or `bake`: one run per key and deployment."""
    template: str
    seconds: float | None
    """How long it judges before it may pass; None: until the deployment moves on."""
    preview: bool = False
    promoted: bool = False
    """After promotion: the new revision serves alone, nothing to compare it with."""


class Act(StrEnum):
    BEGIN = "begin"
    SUPERSEDE = "supersede"
    START = "start"
    READY = "ready"
    RESTART = "restart"
    DRAIN = "drain"
    STOP = "stop"
    SPLIT = "split"
    PROMOTE = "promote"
    ADVANCE = "advance"
    PAUSE = "pause"
    FINISH = "finish"
    PRE_DEPLOY = "pre-deploy"
    """Start the plan's `pre_deploy` commands on the target."""
    CHECKED = "checked"
    """Record how they ended: passed, or failed (the deployment is aborted with the
    output's tail as the reason)."""
    RELEASE = "release"
    """The deployment passed its gate (or the stop-the-line switch was lifted): on."""
    ROLLBACK = "rollback"
    """End a promoted deployment whose bake failed (or a person aborted), and queue a
    rollback to the previous revision: a traffic switch while it is warm."""


@dataclass(frozen=True)
class Action:
    act: Act
    instance: str | None = None
    slot: str | None = None
    digest: str | None = None
    share: int | None = None
    step: int | None = None
    phase: Phase | None = None
    numbers: tuple[int, ...] = ()
    reason: str = ""
    pin: str = ""
    """FINISH, ROLLBACK: pin the plan's digest as bad, by this rule (HEALTH_RULE,
    ANALYSIS_RULE): an automatic abort."""
    warm: bool = False
    """ROLLBACK: the previous revision still runs in the other slot."""
    message: str = ""
    """PAUSE: why, in words, for the deployment's message."""
    released: bool = False
    """BEGIN: its gate is open, so it begins past it (domain.policy)."""

    def params(self) -> dict[str, object]:
        out: dict[str, object] = {
            "instance": self.instance,
            "slot": self.slot,
            "digest": self.digest,
            "share": self.share,
            "step": self.step,
            "phase": self.phase.value if self.phase else None,
            "numbers": list(self.numbers),
            "reason": self.reason,
            "pin": self.pin,
            "warm": self.warm,
            "message": self.message,
            "released": self.released,
        }
        return {k: v for k, v in out.items() if v not in (None, [], "", False)}


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def resolve(amount: int | str, replicas: int, round_up: bool) -> int:
    """`max_surge`/`max_unavailable` as a count: percentages of the replicas, surge
    rounded up and unavailability down (as Kubernetes does)."""
    if isinstance(amount, int):
        return amount
    exact = replicas * int(amount.rstrip("%")) / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def share_of(weight: float) -> int:
    return round(weight * SHARE_SCALE / 100)


@dataclass(frozen=True)
class Traffic:
    """The split as people read it: percent to stable and to canary."""

    stable: float
    canary: float
    canary_slot: str = field(default="b")


def traffic(env: Settled) -> Traffic:
    canary = env.canary_share * 100 / SHARE_SCALE
    return Traffic(
        stable=round(100 - canary, 2), canary=round(canary, 2), canary_slot=other(env.stable_slot)
    )
