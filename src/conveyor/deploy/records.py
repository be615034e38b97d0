"""From rows to what the planner and the router read: a deployment's strategy and runtime
as a Plan, an environment as Settled, its instances as router servers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.deploy.router.base import SHARE_SCALE, HealthCheck, Route, Server, ServerState
from conveyor.deploy.strategies import Kind, Plan, Settled, Step, StepKind, resolve
from conveyor.domain.deploy import InstanceState, PauseReason, Phase, Request
from conveyor.storage.tables import Deployment, Environment, Instance, as_utc

FULL_WEIGHT = 100


def route_key(env: Environment) -> str:
    """The environment's name in the router: `e` and the random tail of its UUIDv7."""
    return "e" + env.id.hex[-12:]


def steps_of(strategy: dict[str, Any]) -> tuple[Step, ...]:
    kind = Kind(strategy["kind"])
    if kind is Kind.CANARY:
        return tuple(_step(raw) for raw in strategy.get("steps", []))
    if kind is Kind.BLUE_GREEN and not strategy.get("auto_promote", False):
        return (Step(StepKind.PAUSE),)
    return ()


def _step(raw: dict[str, Any]) -> Step:
    if "weight" in raw:
        return Step(StepKind.WEIGHT, weight=float(raw["weight"]))
    if "pause" in raw:
        seconds = raw["pause"]
        return Step(StepKind.PAUSE, seconds=None if seconds is None else float(seconds))
    return Step(StepKind.ANALYSIS)


def plan_of(row: Deployment) -> Plan:
    strategy, runtime = row.strategy, row.runtime
    replicas = int(runtime.get("replicas", 1))
    health = runtime.get("health", {})
    return Plan(
        number=row.number,
        digest=row.digest,
        kind=Kind(strategy["kind"]),
        steps=steps_of(strategy),
        replicas=replicas,
        phase=Phase(row.phase),
        step=row.step,
        step_started=as_utc(row.step_started_at) if row.step_started_at else None,
        surge=resolve(strategy.get("max_surge", 1), replicas, round_up=True),
        unavailable=resolve(strategy.get("max_unavailable", 0), replicas, round_up=False),
        scale_down_delay=float(strategy.get("scale_down_delay", 30.0)),
        request=Request(row.request) if row.request else None,
        paused_by_user=row.paused_by_user,
        pause_reason=PauseReason(row.pause_reason) if row.pause_reason else None,
        max_restarts=int(health.get("max_restarts", 3)),
        health_failures=int(health.get("failures", 3)),
        start_period=float(health.get("start_period", 10.0)),
    )


def settled_of(env: Environment, plan_runtime: dict[str, Any] | None) -> Settled:
    runtime = env.runtime or plan_runtime or {}
    return Settled(
        stable_slot=env.stable_slot,
        canary_share=env.canary_share,
        revision=env.revision,
        digest=env.digest,
        replicas=int(env.runtime.get("replicas", 1)) if env.runtime else 0,
        warm_digest=env.warm_digest,
        warm_until=as_utc(env.warm_until) if env.warm_until else None,
        drain_s=float(runtime.get("drain", 10.0)),
    )


def health_of(env: Environment, plan_runtime: dict[str, Any] | None) -> HealthCheck:
    """The router's checks, from the stable revision's `health` (or, before the first
    deploy, from the one in progress)."""
    runtime = env.runtime or plan_runtime or {}
    health = runtime.get("health", {})
    default = HealthCheck()
    return HealthCheck(
        path=str(health.get("path", default.path)),
        interval_ms=_ms(health.get("interval"), default.interval_ms),
        timeout_ms=_ms(health.get("timeout"), default.timeout_ms),
        fall=int(health.get("failures", default.fall)),
    )


def _ms(seconds: object, default: int) -> int:
    return default if seconds is None else max(1, round(float(str(seconds)) * 1000))


def route_of(
    env: Environment, instances: Sequence[Instance], plan_runtime: dict[str, Any] | None
) -> Route:
    servers: dict[str, list[Server]] = {"a": [], "b": []}
    for row in instances:
        state = InstanceState(row.state)
        if state is InstanceState.READY:
            servers[row.slot].append(Server(row.server, row.port, FULL_WEIGHT))
        elif state is InstanceState.DRAINING:
            servers[row.slot].append(Server(row.server, row.port, 0, ServerState.DRAIN))
    canary_slot = "b" if env.stable_slot == "a" else "a"
    share_b = env.canary_share if canary_slot == "b" else SHARE_SCALE - env.canary_share
    return Route(
        key=route_key(env),
        port=env.port,
        preview_port=env.preview_port,
        health=health_of(env, plan_runtime),
        canary_slot=canary_slot,
        share_b=share_b,
        servers={slot: tuple(members) for slot, members in servers.items()},
    )


async def all_routes(session: AsyncSession, target: str = "local") -> list[Route]:
    """Every environment of a target with its live instances: the router's whole config."""
    envs = list(await session.scalars(select(Environment).where(Environment.target == target)))
    live = list(
        await session.scalars(
            select(Instance).where(
                Instance.environment_id.in_([e.id for e in envs]),
                Instance.state != InstanceState.STOPPED.value,
            )
        )
    )
    # Only an environment with no stable revision yet takes its health checks from the
    # deployment in progress (the others read theirs from their own row).
    first = [e.id for e in envs if e.runtime is None]
    plans: dict[Any, dict[str, Any]] = {}
    for env_id, runtime in (
        await session.execute(
            select(Deployment.environment_id, Deployment.runtime)
            .where(
                Deployment.environment_id.in_(first),
                Deployment.phase.in_(
                    [Phase.PENDING.value, Phase.PROGRESSING.value, Phase.PAUSED.value]
                ),
            )
            .order_by(Deployment.number.desc())  # the oldest (the one in progress) wins
        )
    ).all():
        plans[env_id] = runtime
    return [
        route_of(env, [i for i in live if i.environment_id == env.id], plans.get(env.id))
        for env in envs
    ]
