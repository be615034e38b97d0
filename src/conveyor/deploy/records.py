"""From rows to what the planner and the router read: a deployment's stored strategy and
runtime as typed models, then as the planner's Rollout; an environment as Settled; its
instances as router servers.

A deployment row keeps its strategy and runtime as JSON. They are parsed here, once per
pass, into deploy.strategy.DeployStrategy and pipeline.deploy.Runtime, so that every default is the
one the pipeline schema declares and nothing downstream re-reads a dict.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence, Set
from typing import Any

from conveyor.deploy import planner
from conveyor.deploy.instance_hosts import FLEET
from conveyor.deploy.strategy import DeployStrategy
from conveyor.deploy.world import Rollout, Settled, Step, resolve
from conveyor.domain.clock import as_utc
from conveyor.domain.deploy import DriverRequest, InstanceState, PauseReason, Phase
from conveyor.domain.policy import Decision, Gate
from conveyor.hosting.routing import SHARE_SCALE, HealthCheck, Route, Server, ServerState
from conveyor.pipeline.analysis import AnalysisRun
from conveyor.pipeline.deploy import (
    Health,
    Runtime,
)
from conveyor.policy.gates import window_of
from conveyor.storage.deployment_records import DeploymentRecord, EnvironmentRecord, InstanceRecord
from conveyor.storage.environments import RouteRows
from conveyor.storage.policy import FreezeRecord

FULL_WEIGHT = 100
ROLLBACK_KIND = "rollback"
DEFAULT_ANALYSIS_S = AnalysisRun.model_fields["for_"].default
DEFAULT_HEALTH = Health()
DEFAULT_DRAIN_S = Runtime.model_fields["drain"].default


def strategy_of(stored: dict[str, Any]) -> DeployStrategy:
    return DeployStrategy.load(stored)


def runtime_of(stored: dict[str, Any]) -> Runtime:
    """A stored `runtime` (pipeline.deploy.Runtime, dumped when it was deployed)."""
    return Runtime.model_validate(stored)


def route_key(env: EnvironmentRecord) -> str:
    """The environment's name in the router: `e` and the random tail of its UUIDv7."""
    return "e" + env.id.hex[-12:]


def steps_of(strategy: dict[str, Any]) -> tuple[Step, ...]:
    """A stored strategy's steps, as the planner takes them."""
    return planner.steps_of(strategy_of(strategy))


def plan_of(
    row: DeploymentRecord,
    runtime: Runtime | None = None,
    *,
    stopped: bool = False,
    freezes: Sequence[FreezeRecord] = (),
) -> Rollout:
    """The planner's view of a deployment (`runtime`: its runtime, parsed already), with
    what its gate sees: the stop-the-line switch and the freeze windows over it."""
    strategy = strategy_of(row.strategy)
    runtime = runtime or runtime_of(row.runtime)
    health = runtime.health
    return Rollout(
        number=row.number,
        digest=row.digest,
        kind=strategy.kind,
        steps=planner.steps_of(strategy),
        replicas=runtime.replicas,
        phase=Phase(row.phase),
        step=row.step,
        step_started=as_utc(row.step_started_at) if row.step_started_at else None,
        surge=resolve(strategy.max_surge, runtime.replicas, round_up=True),
        unavailable=resolve(strategy.max_unavailable, runtime.replicas, round_up=False),
        scale_down_delay=strategy.scale_down_delay,
        request=DriverRequest(row.request) if row.request else None,
        requested_by=row.requested_by,
        paused_by_user=row.paused_by_user,
        pause_reason=PauseReason(row.pause_reason) if row.pause_reason else None,
        max_restarts=health.max_restarts,
        health_failures=health.failures,
        start_period=health.start_period,
        background=strategy.background_analysis,
        bake=strategy.bake.analysis if strategy.bake else None,
        bake_s=strategy.bake.for_ if strategy.bake else 0.0,
        # A rollback returns to a revision whose checks passed when it was deployed.
        pre_deploy=bool(runtime.pre_deploy) and row.kind != ROLLBACK_KIND,
        pre_deploy_state=row.pre_deploy,
        released=row.released_at is not None,
        gate=gate_of(row, stopped, freezes),
    )


def gate_of(row: DeploymentRecord, stopped: bool, freezes: Sequence[FreezeRecord]) -> Gate:
    return Gate(
        decision=Decision.load(row.policy),
        requested_at=as_utc(row.created_at),
        approved_at=as_utc(row.approved_at) if row.approved_at else None,
        bypass=row.kind == ROLLBACK_KIND or row.emergency is not None,
        freezes=tuple(window_of(w) for w in freezes),
        stopped=stopped,
    )


def governing_runtime(
    env: EnvironmentRecord, plan_runtime: dict[str, Any] | None
) -> Runtime | None:
    """The stable revision's runtime, or before the first deploy the one in progress."""
    raw = env.runtime or plan_runtime
    return runtime_of(raw) if raw else None


def settled_of(env: EnvironmentRecord, plan_runtime: dict[str, Any] | None) -> Settled:
    runtime = governing_runtime(env, plan_runtime)
    return Settled(
        stable_slot=env.stable_slot,
        canary_share=env.canary_share,
        revision=env.revision,
        digest=env.digest,
        # With a stable revision, the governing runtime is its own.
        replicas=runtime.replicas if env.runtime and runtime is not None else 0,
        warm_digest=env.warm_digest,
        warm_until=as_utc(env.warm_until) if env.warm_until else None,
        drain_s=runtime.drain if runtime is not None else DEFAULT_DRAIN_S,
    )


def health_of(env: EnvironmentRecord, plan_runtime: dict[str, Any] | None) -> HealthCheck:
    """The router's checks, from the stable revision's `health` (or, before the first
    deploy, from the one in progress)."""
    runtime = governing_runtime(env, plan_runtime)
    health = runtime.health if runtime is not None else DEFAULT_HEALTH
    return HealthCheck(
        path=health.path,
        interval_ms=_ms(health.interval),
        timeout_ms=_ms(health.timeout),
        fall=health.failures,
    )


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


LOCAL_ADDRESS = "127.0.0.1"
"""Where an instance on the coordinator's own machine listens."""


def route_of(
    env: EnvironmentRecord,
    instances: Sequence[InstanceRecord],
    plan_runtime: dict[str, Any] | None,
    routed: Set[uuid.UUID] = frozenset(),
) -> Route:
    """The environment's route; held by its team's router hosts when it runs on the
    fleet and its team is among `routed` (those with router hosts)."""
    servers: dict[str, list[Server]] = {"a": [], "b": []}
    for row in instances:
        state = InstanceState(row.state)
        address = row.address or LOCAL_ADDRESS
        if state is InstanceState.READY:
            servers[row.slot].append(Server(row.server, row.port, FULL_WEIGHT, address=address))
        elif state is InstanceState.DRAINING:
            servers[row.slot].append(
                Server(row.server, row.port, 0, ServerState.DRAIN, address=address)
            )
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
        team=env.team_id if env.target == FLEET and env.team_id in routed else None,
    )


def routes_of(rows: Sequence[RouteRows], routed: Set[uuid.UUID] = frozenset()) -> list[Route]:
    """The routers' whole config, from storage.environments.route_rows."""
    return [route_of(r.env, r.instances, r.first_runtime, routed) for r in rows]
