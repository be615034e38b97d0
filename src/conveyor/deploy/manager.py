"""The deployment manager: on every coordinator replica, a loop claims environments whose
lease is free, and drives each claimed one with a reconcile pass every `tick_s`; an
environment with nothing deploying and nothing queued is passed less and less often, at
most `idle_tick_s` apart (a poke still runs its next pass at once).

A pass observes (processes, health probes, the router), asks the planner
(planner.decide) for one action, records it as an intent, acts, and marks it done,
each write guarded by the environment's fencing token. A replica that lost its lease
cannot write; the one that takes over first finishes an open intent (every action is
idempotent), so no action is repeated or lost. Leases last `lease_s` (3 s), so a killed
replica's environments move on within about 4 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Set
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from structlog.contextvars import bind_contextvars

from conveyor.analysis.providers.base import MetricProvider
from conveyor.artifacts.blobs import BlobStore
from conveyor.deploy import metrics_targets, records
from conveyor.deploy.analyses import Analyses, default_providers
from conveyor.deploy.context import Driven, DriverContext, Effect, EnvironmentLeaseLost
from conveyor.deploy.effects import CHANGES_ROUTES, HANDLERS, task_id
from conveyor.deploy.instance_hosts import (
    FLEET,
    FleetHosts,
    LocalHosts,
    NewInstance,
    Spot,
    Unplaced,
    launch_of,
    log_patterns,
)
from conveyor.deploy.planner import HEALTH_RULE, RUNNING, decide, states
from conveyor.deploy.planner.common import target_slot
from conveyor.deploy.routers import Routers
from conveyor.deploy.world import Act, Action, Seen, World
from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.deploy import InstanceState, PauseReason, Phase, QueuePolicy
from conveyor.domain.hosts import HostState
from conveyor.hosting.routing import RouterError, ServerStatus, TrafficRouter
from conveyor.hosting.target import Target, TaskResult
from conveyor.ids import new_id
from conveyor.observability import metrics, tracing
from conveyor.observability.logs import bound
from conveyor.pipeline.analysis import Provider
from conveyor.pipeline.deploy import Health
from conveyor.storage import deployments, environments
from conveyor.storage import hosts as host_rows
from conveyor.storage.database import Database, Session
from conveyor.storage.deployment_records import DeploymentRecord, InstanceRecord, IntentRecord
from conveyor.waiting import event_or_timeout

log = logging.getLogger("conveyor.deploy")
MAX_ACTIONS_IN_A_ROW = 20
"""Actions taken back to back before a driver rests one tick (a guard against a loop)."""
STUCK_PASS_S = 60.0
"""A pass running longer than this is stuck: its lease is not renewed for it."""
RELOAD_SETTLED_S = 10.0
"""A settled environment no request has changed is passed from what its last full pass
loaded, and loaded afresh at least this often all the same."""
ROUTER_RETRY_S = 0.5
ROUTER_RETRY_MAX_S = 8.0
"""After the router fails to start or take its config, the next try waits this long,
twice as long after each failure up to the maximum."""


class RouterDown(RouterError):
    """The router's last start or sync failed and its next try is not due yet."""


@dataclass
class ManagerStats:
    passes: int = 0
    actions: int = 0
    quiet: int = 0
    """Passes of a settled environment that found nothing changed and loaded nothing."""
    takeovers: int = 0
    redone: int = 0
    by_act: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Quiet:
    """What the last full pass of a settled environment loaded, for the passes after it."""

    driven: Driven
    changes: int
    loaded_at: float


class DeploymentManager:
    """Claims environments and runs one driver task per environment it holds."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        target: Target,
        router: TrafficRouter,
        *,
        owner: str | None = None,
        lease_s: float = 3.0,
        tick_s: float = 0.1,
        idle_tick_s: float = 1.0,
        claim_s: float = 0.5,
        providers: Mapping[Provider, MetricProvider] | None = None,
        metrics_targets: Path | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        between_passes: Callable[[asyncio.Event, float], Awaitable[bool]] = event_or_timeout,
    ) -> None:
        self.db = db
        self.clock = clock
        """The wall clock the planner's timing rules read (waits, pauses, approval
        deadlines, warm windows); tests move it instead of sleeping."""
        self.monotonic = monotonic
        """The clock of the manager's own timing: the router's back-off, a settled
        environment's reload, a pass's start."""
        self.between_passes = between_passes
        """How a driver waits between passes with nothing to do: until its poke event is
        set or the wait has passed (whether it was poked); tests answer each wait."""
        self.blobs = blobs
        self.target = target
        self.router = router if isinstance(router, Routers) else Routers(router)
        if self.router.hosts is not None:
            self.router.hosts.wake = self._wake
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s = lease_s
        self.tick_s = tick_s
        self.idle_tick_s = max(idle_tick_s, tick_s)
        """How far apart the passes of a settled environment go (its lease, `lease_s`,
        is renewed by each pass: keep this well under it)."""
        self.claim_s = claim_s
        self.local = LocalHosts(target, blobs)
        self.local_host = False
        """This machine is a host of the fleet (the coordinator's embedded agent): new
        environments run there through it unless their runtime places them."""
        self.fleet = FleetHosts(self._wake)
        self.wake_host: Callable[[uuid.UUID], None] = lambda host_id: None
        """Ends the long poll of a host's agent on this replica (the API's fleet sets it)."""
        self.context = DriverContext(
            db,
            blobs,
            target,
            self.owner,
            lease_s,
            self.local,
            self.fleet,
            self._wake,
            clock=lambda: self.clock(),
        )
        """What the action handlers are given (effects.py)."""
        self.analyses = Analyses(
            self.context,
            providers or default_providers(self.router, db),
            clock=lambda: self.clock(),
        )
        self.metrics_targets = metrics_targets
        """Where the instances are listed for Prometheus (metrics_targets.py), if anywhere."""
        self.drivers: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.wakeups: dict[uuid.UUID, asyncio.Event] = {}
        self.settled: dict[uuid.UUID, bool] = {}
        """Per environment, whether its last pass found nothing deploying, nothing queued
        and no open intent."""
        self._quiet: dict[uuid.UUID, _Quiet] = {}
        self.passing_since: dict[uuid.UUID, float] = {}
        """Per environment whose driver is in a pass, when that pass began (monotonic)."""
        self.waits: dict[uuid.UUID, float] = {}
        """Per environment, how long its driver waits between passes with nothing to do:
        `tick_s` while it moves or since a poke, up to `idle_tick_s` while it is settled."""
        self.stats = ManagerStats()
        self._routes_dirty = True
        self._router_lock = asyncio.Lock()
        self._router_backoff = 0.0
        self._router_retry_at = 0.0

    # -- leases ----------------------------------------------------------------------

    async def work(self) -> None:
        """Claim free environments and drive them, until cancelled."""
        try:
            while True:
                try:
                    await self.renew()
                    await self.claim()
                except Exception:  # pragma: no cover - logged; the next round retries
                    log.exception("claiming environments failed")
                await asyncio.sleep(self.claim_s)
        finally:
            for task in self.drivers.values():
                task.cancel()
            for task in list(self.drivers.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.analyses.close()

    async def renew(self) -> int:
        """Extend, in one statement, the lease of every environment this replica drives,
        but for one whose pass has run longer than STUCK_PASS_S: its lease runs out,
        for this or another replica to take over. (Each pass renews its own lease under
        its fence too; this keeps a lease from running out while a busy replica's
        drivers wait for the event loop or a connection, as 500 starting at once do.)"""
        now = self.monotonic()
        alive = [
            env_id
            for env_id, task in self.drivers.items()
            if not task.done() and now - self.passing_since.get(env_id, now) < STUCK_PASS_S
        ]
        if not alive:
            return 0
        async with self.db.transaction() as session:
            return await environments.renew_leases(session, self.owner, alive, self.lease_s)

    async def claim(self) -> list[uuid.UUID]:
        """Take every environment whose lease is free or has run out (a driver of ours
        whose lease ran out under it is replaced)."""
        async with self.db.transaction() as session:
            free = await environments.claim_free(session, self.owner, self.lease_s)
        for env_id, fence in free:
            self.stats.takeovers += 1
            self.wakeups.setdefault(env_id, asyncio.Event())
            stale = self.drivers.get(env_id)
            if stale is not None:
                stale.cancel()
            self.drivers[env_id] = asyncio.create_task(self._drive(env_id, fence))
            log.info("driving environment %s (fence %s)", env_id, fence)
        return [env_id for env_id, _ in free]

    def _wake(self, host_id: uuid.UUID) -> None:
        self.wake_host(host_id)

    def poke(self, env_id: uuid.UUID) -> None:
        """Run the environment's next pass now (a person's command on this replica)."""
        event = self.wakeups.get(env_id)
        if event is not None:
            event.set()

    async def _drive(self, env_id: uuid.UUID, fence: int) -> None:
        """Passes until the lease is lost. After an action the next pass follows at once
        (a switch back is four actions); with nothing to do, it waits `tick_s` (a settled
        environment: longer each time, up to `idle_tick_s`) or a poke."""
        self._routes_dirty = True
        in_a_row = 0
        wait = self.tick_s
        bind_contextvars(environment_id=str(env_id))  # this task's lines (its own context)
        try:
            while True:
                acted = None
                router_down = False
                self.passing_since[env_id] = self.monotonic()
                try:
                    acted = await self.reconcile(env_id, fence)
                except EnvironmentLeaseLost:
                    log.warning("environment %s: lease lost to another replica", env_id)
                    return
                except RouterDown:
                    router_down = True  # its failure was logged by the pass that tried
                except RouterError as exc:
                    log.error("environment %s: %s", env_id, exc)
                except Exception:
                    log.exception("environment %s: pass failed", env_id)
                del self.passing_since[env_id]
                in_a_row = in_a_row + 1 if acted is not None else 0
                if acted is not None and in_a_row < MAX_ACTIONS_IN_A_ROW:
                    continue
                in_a_row = 0
                # Nothing to do: the next pass after `tick_s`, or, while the environment
                # stays settled (or the router is down), twice as long each time up to
                # `idle_tick_s`.
                settled = acted is None and (self.settled.get(env_id, False) or router_down)
                wait = min(wait * 2, self.idle_tick_s) if settled else self.tick_s
                self.waits[env_id] = wait
                event = self.wakeups[env_id]
                if await self.between_passes(event, wait):
                    wait = self.waits[env_id] = self.tick_s
                event.clear()
        finally:
            if self.drivers.get(env_id) in (None, asyncio.current_task()):  # not replaced
                self.drivers.pop(env_id, None)
                for kept in (self.settled, self.waits, self._quiet, self.passing_since):
                    kept.pop(env_id, None)

    # -- one pass --------------------------------------------------------------------

    async def reconcile(self, env_id: uuid.UUID, fence: int) -> Action | None:
        """One pass: finish an open intent, or observe, decide and take one action."""
        self.stats.passes += 1
        quiet = self._quiet.pop(env_id, None)
        if quiet is not None and await self._quiet_pass(env_id, fence, quiet):
            self._quiet[env_id] = quiet
            return None
        async with self.context.fenced(env_id, fence) as session:
            driven = await self.load(session, env_id)
        await self._ensure_router()
        open_intent = driven.rows.open_intent
        self.settled[env_id] = (
            open_intent is None and driven.plan_row is None and driven.rows.first_pending is None
        )
        if open_intent is not None:
            self.stats.redone += 1
            redo = _action_of(open_intent)
            await self._execute(
                Effect(env_id, fence, driven, redo, dict(open_intent.params), open_intent.id)
            )
            return redo
        plan_id = driven.plan_row.id if driven.plan_row is not None else None
        with bound(deployment_id=plan_id):
            acted = await self._decide_and_act(env_id, fence, driven)
        if acted is None and self.settled[env_id] and _steady(driven):
            self._quiet[env_id] = _Quiet(driven, driven.env.changes, self.monotonic())
        return acted

    async def _quiet_pass(self, env_id: uuid.UUID, fence: int, quiet: _Quiet) -> bool:
        """A settled environment's pass from what its last full pass loaded, when no
        request changed it since: the lease renewed in one statement, its instances and
        the router looked at afresh. False when it needs a full pass (it changed, it is
        due a reload, or there is something to do)."""
        if self.monotonic() - quiet.loaded_at >= RELOAD_SETTLED_S:
            return False
        async with self.db.transaction() as session:
            changes = await environments.renew_lease_quietly(
                session, env_id, fence, self.owner, self.lease_s
            )
        if changes is None:
            raise EnvironmentLeaseLost(str(env_id))
        if changes != quiet.changes:
            return False
        await self._ensure_router()
        world, statuses = await self._observe(env_id, fence, quiet.driven)
        if decide(world) is not None:
            return False
        await self.apply(quiet.driven, statuses)
        self.stats.quiet += 1
        return True

    async def _decide(self, driven: Driven, world: World) -> tuple[World, Action | None]:
        """The planner's action; on the fleet, decided again with placement's reason
        when no host can take the instance it starts (or the one a deployment paused
        for placement waits to start)."""
        action = decide(world)
        if driven.env.target != FLEET:
            return world, action
        plan = world.plan
        waiting = (
            plan is not None
            and plan.phase is Phase.PAUSED
            and plan.pause_reason is PauseReason.PLACEMENT
        )
        starting = action is not None and action.act in (Act.START, Act.PRE_DEPLOY)
        if not (starting or waiting):
            return world, action
        if action is not None and action.act is Act.START:
            slot, runtime = str(action.slot), driven.runtime_for(str(action.digest))
        else:
            slot, runtime = target_slot(world), driven.runtime
        if runtime is None:
            return world, action
        task = plan is not None and plan.pre_deploy and plan.pre_deploy_state is None
        async with self.db.transaction() as session:
            no_room = await self.fleet.room(
                session, NewInstance(driven.env, runtime, slot, driven.instances, task)
            )
        if no_room is None:
            return world, action
        world = replace(world, no_room=no_room)
        decided = decide(world)
        if decided is not None and decided.act is Act.PAUSE:
            metrics.placement_failures.inc()
        return world, decided

    async def _decide_and_act(self, env_id: uuid.UUID, fence: int, driven: Driven) -> Action | None:
        world, statuses = await self._observe(env_id, fence, driven)
        world = await self.analyses.judge(env_id, fence, driven, world)
        world, action = await self._decide(driven, world)
        if action is None:
            await self.apply(driven, statuses)
            return None
        try:
            intent, params = await self._intend(env_id, fence, driven, action, world)
        except Unplaced as exc:  # taken since this pass looked: the next pass pauses
            log.warning("environment %s: %s", env_id, exc)
            await self.apply(driven, statuses)
            return None
        await self._execute(Effect(env_id, fence, driven, action, params, intent))
        return action

    @staticmethod
    async def load(session: Session, env_id: uuid.UUID) -> Driven:
        return Driven.of(await environments.load(session, env_id))

    async def _routed(self) -> Set[uuid.UUID]:
        """The teams whose fleet environments are routed by their router hosts."""
        hosts = self.router.hosts if isinstance(self.router, Routers) else None
        return await hosts.teams() if hosts is not None else frozenset()

    async def _ensure_router(self) -> None:
        """Sync the router when routes changed or it is not running: one driver at a time
        (the others find it done), and after a failure not again before its retry time
        (RouterDown until then), so a router that cannot start costs one try, not one per
        environment and pass."""
        if not self._routes_dirty and self.router.running():
            return
        async with self._router_lock:
            if not self._routes_dirty and self.router.running():
                return
            if self.monotonic() < self._router_retry_at:
                raise RouterDown("the router is down; its next start is not due yet")
            self._routes_dirty = False  # a change made during the sync marks it again
            try:
                async with self.db.transaction() as session:
                    rows = await environments.route_rows(session)
                routed = await self._routed()
                await self.router.sync(records.routes_of(rows, routed))
            except BaseException as exc:
                self._routes_dirty = True
                if isinstance(exc, Exception):
                    self._router_backoff = min(
                        max(self._router_backoff * 2, ROUTER_RETRY_S), ROUTER_RETRY_MAX_S
                    )
                    self._router_retry_at = self.monotonic() + self._router_backoff
                raise
            if self._router_backoff:
                log.info("the router is up again")
                self._router_backoff = self._router_retry_at = 0.0
                for event in self.wakeups.values():
                    event.set()  # every driver's next pass now
            if self.metrics_targets is not None:
                await asyncio.to_thread(metrics_targets.write, self.metrics_targets, rows)

    async def _observe(
        self, env_id: uuid.UUID, fence: int, driven: Driven
    ) -> tuple[World, dict[str, ServerStatus] | None]:
        """What the driver sees, and the router's answer it was built from (None when the
        router did not answer)."""
        now = self.clock()
        statuses: dict[str, ServerStatus] | None
        try:
            statuses = await self.router.status(records.route_key(driven.env))
        except (OSError, RouterError):
            statuses = None
            self._routes_dirty = True
        seen: list[Seen] = []
        probes: dict[uuid.UUID, int] = {}
        hosts = self.context.hosts_for(driven.env)
        leaving: frozenset[uuid.UUID] = frozenset()
        if driven.env.target == FLEET:
            async with self.db.transaction() as session:
                leaving = await self.fleet.leaving(session, driven.instances)
        for row in driven.instances:
            state = InstanceState(row.state)
            if state is InstanceState.STOPPED:
                hosts.reap(row, now)
                continue
            runtime = driven.runtime_for(row.digest)
            starting = state is InstanceState.STARTING
            look = await hosts.look(row, runtime, probe=starting)
            if starting and look.alive and look.healthy is not None:
                health = runtime.health if runtime is not None else records.DEFAULT_HEALTH
                failures = self._count_failure(row, look.healthy, health, now)
                if failures != row.health_failures:
                    probes[row.id] = failures
            seen.append(
                Seen(
                    id=str(row.id),
                    digest=row.digest,
                    slot=row.slot,
                    state=state,
                    alive=look.alive,
                    probe_ok=look.healthy if starting and look.alive else None,
                    router=statuses.get(row.server) if statuses is not None else None,
                    restarts=row.restarts,
                    health_failures=probes.get(row.id, row.health_failures),
                    draining_s=(now - as_utc(row.drain_started_at)).total_seconds()
                    if row.drain_started_at
                    else None,
                    leaving=row.id in leaving,
                )
            )
        if probes:
            async with self.context.fenced(env_id, fence) as session:
                await environments.count_failures(session, probes)
        plan_runtime = driven.plan_row.runtime if driven.plan_row is not None else None
        task = None
        if driven.plan_row is not None and driven.plan_row.pre_deploy == RUNNING:
            if driven.env.target == FLEET:
                task = await self._task_on_host(driven.plan_row)
            else:
                task = self.target.task_result(task_id(driven.plan_row.id))
        world = World(
            env=records.settled_of(driven.env, plan_runtime),
            plan=driven.rollout,
            instances=tuple(seen),
            now=now,
            pending=driven.rows.pending,
            newest_wins=driven.env.queue_policy == QueuePolicy.NEWEST_WINS.value,
            pinned=driven.rows.pinned,
            task=task,
            next_gate=driven.next_gate,
        )
        return world, statuses

    async def _task_on_host(self, plan: DeploymentRecord) -> TaskResult | None:
        """How the pre_deploy commands ended on their host, as its agent reported (None
        while they run); a failure when the host was lost or removed before it said."""
        if plan.pre_deploy_result is not None:
            return TaskResult(
                int(plan.pre_deploy_result.get("exit_code", -1)),
                str(plan.pre_deploy_result.get("command", "")),
                str(plan.pre_deploy_result.get("output", "")),
            )
        host = plan.pre_deploy_host_id
        if host is not None:
            async with self.db.transaction() as session:
                state = (await host_rows.states(session, {host})).get(host)
            if state is not None and state is not HostState.LOST:
                return None
        return TaskResult(-1, "", "the host running them was lost before they ended")

    @staticmethod
    def _count_failure(row: InstanceRecord, ok: bool, health: Health, now: datetime) -> int:
        if ok:
            return 0
        started = row.started_at or row.created_at
        if (now - as_utc(started)).total_seconds() < health.start_period:
            return row.health_failures
        return row.health_failures + 1

    async def apply(self, driven: Driven, seen: dict[str, ServerStatus] | None = None) -> None:
        """Make the router hold the loaded rows (`seen`: the router's state this pass,
        when no action changed anything since it was read)."""
        runtime = driven.plan_row.runtime if driven.plan_row is not None else None
        route = records.route_of(driven.env, driven.instances, runtime, await self._routed())
        try:
            await self.router.apply(route, seen)
        except OSError:
            self._routes_dirty = True

    # -- intents and effects ---------------------------------------------------------

    async def _intend(
        self, env_id: uuid.UUID, fence: int, driven: Driven, action: Action, world: World
    ) -> tuple[uuid.UUID, dict[str, object]]:
        params = action.params()
        if action.act is Act.START:  # fixed now, so that a redo starts the same instance
            params["new_instance"] = str(new_id())
            spot = await self._spot(driven, str(action.digest), str(action.slot))
            params["port"] = spot.port
            if spot.host_id is not None:
                params["host"], params["address"] = str(spot.host_id), spot.address
        if action.act is Act.PRE_DEPLOY and driven.env.target == FLEET:  # on one host
            assert driven.plan_row is not None
            spot = await self._spot(driven, driven.plan_row.digest, target_slot(world), task=True)
            params["host"] = str(spot.host_id)
        plan_id = driven.plan_row.id if driven.plan_row is not None else None
        async with self.context.fenced(env_id, fence) as session:
            row = await environments.record_intent(
                session, env_id, plan_id, action.act.value, params, fence=fence, driver=self.owner
            )
            if plan_id is not None:
                desired, observed = states(world)
                await environments.record_states(session, plan_id, desired, observed)
            if action.act is Act.START:
                self._add_instance(session, driven, action, params)
        self.stats.actions += 1
        self.stats.by_act[action.act.value] = self.stats.by_act.get(action.act.value, 0) + 1
        log.info("environment %s: %s %s", env_id, action.act.value, params)
        return row, params

    async def _spot(self, driven: Driven, digest: str, slot: str, task: bool = False) -> Spot:
        """Where a new instance (or the pre_deploy `task`) goes: a free port here, or a
        host placement chose."""
        runtime = driven.runtime_for(digest)
        assert runtime is not None, "an instance starts for a recorded runtime"
        async with self.db.transaction() as session:
            new = NewInstance(driven.env, runtime, slot, driven.instances, task)
            return await self.context.hosts_for(driven.env).spot(session, new)

    @staticmethod
    def _add_instance(
        session: Session, driven: Driven, action: Action, params: dict[str, object]
    ) -> None:
        plan = driven.plan_row
        digest = str(action.digest)
        host = params.get("host")
        runtime = driven.runtime_for(digest)
        environments.add_instance(
            session,
            instance_id=uuid.UUID(str(params["new_instance"])),
            environment_id=driven.env.id,
            deployment_id=plan.id if plan is not None else None,
            revision=plan.number
            if plan is not None and plan.digest == digest
            else driven.env.revision,
            digest=digest,
            slot=str(action.slot),
            port=int(str(params["port"])),
            host_id=uuid.UUID(str(host)) if host else None,
            address=str(params["address"]) if host else None,
            launch=launch_of(runtime, _patterns(plan)) if host and runtime is not None else None,
        )

    async def _execute(self, effect: Effect) -> None:
        deployment = effect.driven.plan_row
        if effect.action.act is Act.BEGIN and effect.action.numbers and tracing.on():
            # The deployment it begins is still pending, not yet the active one: its
            # stored context is read only when there are spans to hang from it.
            async with self.db.transaction() as session:
                deployment = await deployments.numbered(
                    session, effect.env_id, effect.action.numbers[0]
                )
        with tracing.span(
            f"deploy.{effect.action.act.value}",
            deployment.traceparent if deployment is not None else None,
            attributes={
                "conveyor.environment_id": str(effect.env_id),
                "conveyor.deployment": deployment.number if deployment is not None else None,
                "conveyor.slot": str(effect.action.slot) if effect.action.slot else None,
                "conveyor.share": effect.action.share,
            },
        ):
            await self._carry_out(effect)

    async def _carry_out(self, effect: Effect) -> None:
        after = await HANDLERS[effect.action.act](self.context, effect)
        if effect.action.act in CHANGES_ROUTES:
            self._routes_dirty = True
        async with self.db.transaction() as session:
            refreshed = await self.load(session, effect.env_id)
        await self.apply(refreshed)
        if after is not None:
            after()


def _action_of(row: IntentRecord) -> Action:
    """The action an intent recorded (params as Action.params wrote them)."""
    params: dict[str, Any] = dict(row.params)
    return Action(
        act=Act(params.pop("act", row.action)),
        instance=params.get("instance"),
        slot=params.get("slot"),
        digest=params.get("digest"),
        share=params.get("share"),
        step=params.get("step"),
        phase=Phase(params["phase"]) if params.get("phase") else None,
        numbers=tuple(params.get("numbers", ())),
        reason=params.get("reason", ""),
        pin=_pin_rule(params.get("pin")),
        warm=bool(params.get("warm", False)),
        message=str(params.get("message", "")),
        released=bool(params.get("released", False)),
    )


def _pin_rule(recorded: object) -> str:
    """The rule an intent pins by (intents written before rules had names said True)."""
    if recorded is True:
        return HEALTH_RULE
    return str(recorded) if recorded else ""


def _patterns(plan: DeploymentRecord | None) -> list[str]:
    """What the `logs` metrics of the deployment's analysis templates match."""
    if plan is None:
        return []
    return log_patterns(dict(plan.strategy.get("templates") or {}))


def _steady(driven: Driven) -> bool:
    """No instance is starting: a starting one's health checks are counted in its row,
    so each pass must load it."""
    return all(row.state != InstanceState.STARTING.value for row in driven.instances)
