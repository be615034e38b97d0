"""Protected environments: their rules, what the rules decide for a deployment, and what
holds a deployment at its gate (docs/policy.md). Pure: the facts (the artifact's branch,
its risk score, who asked, the approvals given, the freeze in force) are gathered
elsewhere.

A deployment passes its gate, in order, when: no approval is missing (or the approval
timeout's action is `approve`), the wait timer has run, no freeze window holds it, and
the stop-the-line switch is off. A rollback and an emergency deploy pass every gate but
the stop-the-line switch for a deploy (a rollback is never held).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from conveyor.domain.deploy import PauseReason as Hold
from conveyor.domain.errors import Conflict, Invalid
from conveyor.domain.freeze import Window, frozen
from conveyor.domain.roles import Role

DEFAULT_APPROVAL_TIMEOUT = timedelta(days=3)
"""How long a deployment waits for its approvals: Spinnaker's Manual Judgment's three
days."""
MAX_APPROVALS = 10


class OnTimeout(StrEnum):
    REJECT = "reject"
    APPROVE = "approve"


class RuleError(Invalid, ValueError):
    """A protection rule that cannot be: names the field."""


@dataclass(frozen=True)
class Rules:
    """An environment's protection rules (every field has the unprotected default)."""

    required_approvals: int = 0
    approver_role: Role = Role.MAINTAINER
    allowed_branches: tuple[str, ...] = ()
    """Globs; empty: any branch (and artifacts built outside a pipeline)."""
    wait_timer: float = 0.0
    """Seconds a deployment waits after its approvals (or its request) before it starts."""
    approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT.total_seconds()
    on_timeout: OnTimeout = OnTimeout.REJECT
    auto_approve_below: int | None = None
    """A risk score: a deployment scored below it needs no person."""
    emergency_role: Role = Role.MAINTAINER
    """Who may deploy or roll back with `--emergency`."""
    timezone: str = "UTC"
    """The environment's clock: its risk timing, and its freeze windows by default."""

    @property
    def protected(self) -> bool:
        return bool(self.required_approvals or self.allowed_branches or self.wait_timer)

    def stored(self) -> dict[str, Any]:
        out = asdict(self)
        out["approver_role"] = self.approver_role.label
        out["emergency_role"] = self.emergency_role.label
        out["allowed_branches"] = list(self.allowed_branches)
        out["on_timeout"] = self.on_timeout.value
        return out


FIELDS = frozenset(f.name for f in fields(Rules))


def _role(value: object) -> Role:
    try:
        return Role.parse(str(value))
    except KeyError:
        raise ValueError("one of viewer, developer, maintainer, owner, admin") from None


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_APPROVALS:
        raise ValueError(f"a whole number from 0 to {MAX_APPROVALS}")
    return value


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("seconds, 0 or more")
    return float(value)


def _score(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError("a risk score from 0 to 100")
    return value


def _branches(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("a list of branch globs")
    return tuple(value)


def _zone(value: object) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone") from None
    return str(value)


PARSERS: Mapping[str, Callable[[object], object]] = {
    "required_approvals": _count,
    "approver_role": _role,
    "allowed_branches": _branches,
    "wait_timer": _seconds,
    "approval_timeout": _seconds,
    "on_timeout": lambda v: OnTimeout(str(v)),
    "auto_approve_below": _score,
    "emergency_role": _role,
    "timezone": _zone,
}


def parse(raw: Mapping[str, Any], where: str = "rules") -> dict[str, object]:
    """Rule fields as given (JSON, durations in seconds) checked and typed: RuleError
    names the first wrong one."""
    out: dict[str, object] = {}
    for name, value in raw.items():
        if name not in FIELDS:
            raise RuleError(f"{where}.{name}: not a rule (one of {', '.join(sorted(FIELDS))})")
        try:
            out[name] = PARSERS[name](value)
        except ValueError as exc:
            raise RuleError(f"{where}.{name}: {exc}") from None
    return out


def merged(declared: Mapping[str, Any], server: Mapping[str, Any]) -> Rules:
    """The rules in force: conveyor.yml's `environments.<name>`, with the server's
    settings winning field by field."""
    values = parse(declared, "conveyor.yml") | parse(server, "server")
    return Rules(**values)  # type: ignore[arg-type]


class RulesRefuse(Conflict):
    """The rules refuse the deployment outright."""


@dataclass(frozen=True)
class Decision:
    """What the rules decided when a deployment was asked for (stored on it)."""

    required: int = 0
    """Approvals it needs before it starts."""
    approver_role: Role = Role.MAINTAINER
    reasons: tuple[str, ...] = ()
    risk: int | None = None
    wait_timer: float = 0.0
    approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT.total_seconds()
    on_timeout: OnTimeout = OnTimeout.REJECT
    emergency: bool = False

    def stored(self) -> dict[str, Any]:
        out = asdict(self)
        out["approver_role"] = self.approver_role.label
        out["reasons"] = list(self.reasons)
        out["on_timeout"] = self.on_timeout.value
        return out

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None) -> Decision:
        if not stored:
            return cls()
        values = dict(stored)
        values["approver_role"] = Role.parse(str(values.get("approver_role", "maintainer")))
        values["reasons"] = tuple(values.get("reasons", ()))
        values["on_timeout"] = OnTimeout(values.get("on_timeout", "reject"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def decide(
    rules: Rules,
    environment: str,
    *,
    branch: str | None,
    risk: int | None,
    emergency: bool = False,
    branch_allowed: Callable[[str, str], bool],
) -> Decision:
    """What a deployment to `environment` needs: RulesRefuse for a branch the rules do not
    allow; otherwise the approvals it needs and why (none below `auto_approve_below`).
    `branch_allowed(pattern, branch)` matches one glob."""
    if rules.allowed_branches:
        allowed = ", ".join(rules.allowed_branches)
        if branch is None:
            raise RulesRefuse(
                f"{environment} accepts artifacts built from {allowed} only (allowed_branches);"
                " this one was not built by a pipeline run of a branch"
            )
        if not any(branch_allowed(p, branch) for p in rules.allowed_branches):
            raise RulesRefuse(
                f"{environment} accepts artifacts built from {allowed} only (allowed_branches);"
                f" this one was built from {branch}"
            )
    base = Decision(
        approver_role=rules.approver_role,
        risk=risk,
        wait_timer=0.0 if emergency else rules.wait_timer,
        approval_timeout=rules.approval_timeout,
        on_timeout=rules.on_timeout,
        emergency=emergency,
    )
    if emergency:
        return replace(base, reasons=("emergency: approvals skipped",))
    if not rules.required_approvals:
        return base
    threshold = rules.auto_approve_below
    if threshold is not None and risk is not None and risk < threshold:
        why = f"risk {risk} is below {threshold} (auto_approve_below): approved automatically"
        return replace(base, reasons=(why,))
    n = rules.required_approvals
    plural = "s" if n > 1 else ""
    reasons = [f"{environment} requires {n} approval{plural} by a {rules.approver_role.label}"]
    if threshold is not None and risk is not None:
        reasons.append(f"risk {risk} is at or above {threshold} (auto_approve_below)")
    return replace(base, required=n, reasons=tuple(reasons))


@dataclass(frozen=True)
class Gate:
    """What a deployment's gate sees now."""

    decision: Decision = field(default_factory=Decision)
    requested_at: datetime | None = None
    approved_at: datetime | None = None
    """When its last approval came; None while one is missing."""
    bypass: bool = False
    """A rollback or an emergency deploy: passes approvals, wait timer and freezes."""
    freezes: tuple[Window, ...] = ()
    """The freeze windows over the environment."""
    stopped: bool = False
    """The stop-the-line switch is on."""


@dataclass(frozen=True)
class Admission:
    hold: Hold | None
    """Why it waits; None: it may start (or, with `timed_out`, end)."""
    message: str = ""
    timed_out: bool = False
    """Its approvals did not come within the timeout: `on_timeout` says what happens."""


def judge(gate: Gate, now: datetime) -> Admission:
    """Whether a deployment may pass its gate now, and if not, why it waits."""
    if gate.stopped and not gate.bypass:
        return Admission(Hold.STOP, "stop-the-line is on: deployments wait until it is lifted")
    decision = gate.decision
    approved = gate.approved_at
    if not gate.bypass and decision.required and approved is None:
        start = gate.requested_at or now
        deadline = start + timedelta(seconds=decision.approval_timeout)
        if now >= deadline:
            if decision.on_timeout is OnTimeout.APPROVE:
                approved = deadline
            else:
                return Admission(
                    None,
                    f"rejected: no approval within {span_text(decision.approval_timeout)}",
                    timed_out=True,
                )
        else:
            return Admission(Hold.APPROVAL, "; ".join(decision.reasons))
    if not gate.bypass and decision.wait_timer:
        start = approved or gate.requested_at or now
        until = start + timedelta(seconds=decision.wait_timer)
        if now < until:
            return Admission(Hold.WAIT, f"wait timer: starts at {until.isoformat()}")
    held = None if gate.bypass else frozen(list(gate.freezes), now)
    if held is not None:
        return Admission(Hold.FREEZE, f"a freeze window holds it until {held[1].isoformat()}")
    return Admission(None)


def span_text(seconds: float) -> str:
    """A duration of the rules as people write it: `3d`, `12h`, `5m`, `90s`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
