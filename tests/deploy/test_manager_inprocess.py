"""The deployment manager driven in-process: real SQLite (and PostgreSQL where leases and
fencing are at stake), the shipped fakes for the target (FakeTarget: no processes, faults
from the environment) and the router (MemoryRouter), and passes taken one at a time
(`reconcile`), so every action is seen in order with no sleeps.

Zero downtime against real HAProxy and real processes is proven by the other tests in
this folder; these check the manager's logic: each strategy's action sequence, intent
redo, lease takeover and fencing, and the faults a target can have.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import update

from conveyor.deploy import manager as manager_module
from conveyor.deploy import records
from conveyor.deploy.context import EnvironmentLeaseLost
from conveyor.deploy.manager import RouterDown
from conveyor.deploy.strategy import DeployStrategy
from conveyor.deploy.world import Act, Action, Kind
from conveyor.domain.clock import as_utc, utcnow
from conveyor.domain.deploy import Control, Phase
from conveyor.domain.errors import Conflict
from conveyor.hosting.fake_target import CRASH_S, START_S, UNHEALTHY
from conveyor.hosting.routing import RouterError
from conveyor.observability import tracing
from conveyor.storage import audit, deployments, environments, events
from conveyor.storage.tables import Environment
from tests.deploy.inprocess import (
    ROLLING,
    Clock,
    World,
    claimed,
    serving_v1,
)
from tests.helpers import wait_until_async


async def test_a_first_rolling_deploy_starts_readies_and_promotes(world: World):
    await world.deploy(ROLLING)
    manager = world.manager()
    fence = await claimed(manager, world)
    acts = await world.drive(manager, fence, Phase.SUCCEEDED)
    # A healthy instance is made ready before the next one starts (rules in order).
    assert acts == [
        Act.BEGIN,
        Act.START,
        Act.READY,
        Act.START,
        Act.READY,
        Act.PROMOTE,
        Act.FINISH,
    ]
    env = await world.env()
    assert (env.revision, env.stable_slot) == (1, "a")
    assert len(world.target.live()) == 2


async def test_rolling_replaces_in_place_one_at_a_time_within_the_surge(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy(ROLLING)
    acts = await world.drive(manager, fence, Phase.SUCCEEDED, number=2)
    # max_surge 1: one new instance at a time, each ready before an old one drains.
    assert acts == [
        Act.BEGIN,
        Act.START,
        Act.READY,
        Act.DRAIN,
        Act.STOP,
        Act.START,
        Act.READY,
        Act.DRAIN,
        Act.STOP,
        Act.PROMOTE,
        Act.FINISH,
    ]
    assert len(world.target.live()) == 2


async def test_blue_green_waits_for_promotion_then_switches_and_keeps_the_old_warm(
    world: World,
):
    manager, fence = await serving_v1(world)
    await world.deploy({"kind": "blue-green", "scale_down_delay": 30.0})
    acts = await world.drive(manager, fence, Phase.PAUSED, number=2)
    assert acts == [Act.BEGIN, Act.START, Act.READY, Act.START, Act.READY, Act.PAUSE]
    assert (await world.env()).canary_share == 0, "the preview takes no traffic"
    await world.control(Control.PROMOTE)
    acts = await world.drive(manager, fence, Phase.SUCCEEDED, number=2)
    assert acts == [Act.ADVANCE, Act.SPLIT, Act.PROMOTE, Act.FINISH]
    env = await world.env()
    assert (env.revision, env.stable_slot, env.canary_share) == (2, "b", 0)
    assert env.warm_digest == (await world.deployment(1)).digest
    assert len(world.target.live()) == 4, "the old stack stays warm for scale_down_delay"


async def test_a_rollback_to_the_warm_revision_is_a_traffic_switch(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy({"kind": "blue-green", "scale_down_delay": 30.0, "auto_promote": True})
    await world.drive(manager, fence, Phase.SUCCEEDED, number=2)
    started = len(world.target.starts)
    back = await world.rollback()
    assert DeployStrategy.load(back.strategy) == DeployStrategy(kind=Kind.SWITCH)
    acts = await world.drive(manager, fence, Phase.SUCCEEDED, number=back.number)
    assert acts == [Act.BEGIN, Act.SPLIT, Act.PROMOTE, Act.FINISH]
    assert len(world.target.starts) == started, "the warm instances take the traffic back"
    env = await world.env()
    assert (env.revision, env.stable_slot, env.digest) == (3, "a", back.digest)
    async with world.db.transaction() as session:
        pinned = await deployments.pin_of(session, world.env_id, (await world.deployment(2)).digest)
    assert pinned is not None and "rolled back from revision 2" in pinned.reason


async def test_a_rollback_to_a_cold_revision_redeploys_it_rolling(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy(ROLLING)
    await world.drive(manager, fence, Phase.SUCCEEDED, number=2)
    back = await world.rollback()
    assert DeployStrategy.load(back.strategy) == DeployStrategy(kind=Kind.ROLLING)
    acts = await world.drive(manager, fence, Phase.SUCCEEDED, number=back.number)
    assert acts.count(Act.START) == 2 and acts.count(Act.STOP) == 2
    assert acts[0] is Act.BEGIN and acts[-2:] == [Act.PROMOTE, Act.FINISH]
    assert (await world.env()).digest == (await world.deployment(1)).digest


async def test_canary_moves_the_split_step_by_step(world: World):
    manager, fence = await serving_v1(world)
    steps = [{"weight": 20.0}, {"pause": None}, {"weight": 50.0}]
    await world.deploy({"kind": "canary", "steps": steps})
    acts = await world.drive(manager, fence, Phase.PAUSED, number=2)
    assert acts == [
        Act.BEGIN,
        Act.START,
        Act.READY,
        Act.START,
        Act.READY,
        Act.SPLIT,
        Act.ADVANCE,
        Act.PAUSE,
    ]
    assert (await world.env()).canary_share == 2_000
    await world.control(Control.PROMOTE)
    acts = await world.drive(manager, fence, Phase.SUCCEEDED, number=2)
    assert acts == [
        Act.ADVANCE,
        Act.SPLIT,
        Act.ADVANCE,
        Act.SPLIT,
        Act.PROMOTE,
        Act.FINISH,
    ]
    assert (await world.env()).revision == 2


async def test_an_unhealthy_canary_is_aborted_pinned_and_the_traffic_stays_stable(
    world: World,
):
    manager, fence = await serving_v1(world)
    bad = await world.deploy({"kind": "canary", "steps": [{"weight": 50.0}]}, **{UNHEALTHY: "1"})
    acts = await world.drive(manager, fence, Phase.ABORTED, number=2)
    assert acts[:3] == [Act.BEGIN, Act.START, Act.START]
    assert Act.SPLIT not in acts, "an instance that never became ready took no traffic"
    assert acts[-1] is Act.FINISH
    row = await world.deployment(2)
    assert "failed 2 health checks" in row.message
    async with world.db.transaction() as session:
        pin = await deployments.pin_of(session, world.env_id, bad.digest)
    assert pin is not None and pin.pinned_by == "conveyor (health check)"
    acts = await world.drive(manager, fence)
    assert acts.count(Act.STOP) == 2, "the canary's instances are removed"
    assert (await world.env()).revision == 1


async def test_a_crashing_canary_is_restarted_then_aborted(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy({"kind": "canary", "steps": [{"pause": None}]}, **{CRASH_S: "0"})
    acts = await world.drive(manager, fence, Phase.ABORTED, number=2)
    assert acts.count(Act.RESTART) >= 3, "max_restarts 2: restarted until past it"
    assert "crashed" in (await world.deployment(2)).message


async def test_a_slow_start_within_the_start_period_waits_then_goes_on(world: World):
    manager, fence = await serving_v1(world)
    steps = [{"weight": 50.0}, {"pause": None}]
    await world.deploy({"kind": "canary", "steps": steps}, start_period=60.0, **{START_S: "30"})
    acts = await world.drive(manager, fence)  # until a pass has nothing to do
    assert acts == [Act.BEGIN, Act.START, Act.START], "started, not answering yet"
    assert (await world.deployment(2)).phase == "progressing"
    assert (await world.env()).canary_share == 0, "no traffic to an instance not ready"
    clock = world.target.clock
    assert isinstance(clock, Clock)
    clock.now += 30  # the new instances answer their health path now
    acts = await world.drive(manager, fence, Phase.PAUSED, number=2)
    assert acts == [Act.READY, Act.READY, Act.SPLIT, Act.ADVANCE, Act.PAUSE]
    assert (await world.env()).canary_share == 5_000


async def test_a_dead_stable_instance_is_restarted(world: World):
    manager, fence = await serving_v1(world)
    victim = next(iter(world.target.by_instance))
    world.target.crash(victim)
    acts = await world.drive(manager, fence, check_traffic=False)
    assert acts == [Act.RESTART, Act.READY]
    assert len(world.target.live()) == 2


async def test_a_settled_environment_is_passed_without_loading_until_it_moves(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    """Once a full pass finds it settled, a pass renews the lease in one statement and
    looks at the instances and the router again; a request (which raises `changes`), a
    dead instance or the reload interval bring a full pass back."""
    manager, fence = await serving_v1(world)
    assert await manager.reconcile(world.env_id, fence) is None  # full: finds it settled
    quiet, sent = manager.stats.quiet, world.db.statements
    assert await manager.reconcile(world.env_id, fence) is None
    assert manager.stats.quiet == quiet + 1
    assert world.db.statements - sent == 1, "the lease, renewed in one statement"
    with monkeypatch.context() as patched:  # due a reload: a full pass all the same
        patched.setattr(manager_module, "RELOAD_SETTLED_S", 0.0)
        assert await manager.reconcile(world.env_id, fence) is None
        assert manager.stats.quiet == quiet + 1
    # A request on the environment: the next pass loads it and acts.
    await world.deploy(ROLLING)
    assert await manager.reconcile(world.env_id, fence) is not None
    await world.drive(manager, fence, Phase.SUCCEEDED, number=2)
    assert await manager.reconcile(world.env_id, fence) is None
    assert await manager.reconcile(world.env_id, fence) is None
    assert manager.stats.quiet == quiet + 2
    # An instance that died is seen from the cached rows; the restart is a full pass.
    victim = next(i for i, p in world.target.by_instance.items() if p.alive)
    world.target.crash(victim)
    acted = await manager.reconcile(world.env_id, fence)
    assert acted is not None and acted.act is Act.RESTART
    assert manager.stats.quiet == quiet + 2


async def test_abort_sends_the_canary_share_back_first(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy({"kind": "canary", "steps": [{"weight": 30.0}, {"pause": None}]})
    await world.drive(manager, fence, Phase.PAUSED, number=2)
    await world.control(Control.ABORT)
    acts = await world.drive(manager, fence, Phase.ABORTED, number=2)
    assert acts == [Act.SPLIT, Act.FINISH]
    assert (await world.env()).canary_share == 0


async def test_pause_and_resume_go_through_the_guarded_phases(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy({"kind": "canary", "steps": [{"weight": 30.0}, {"weight": 60.0}]})
    await world.manager().reconcile(world.env_id, fence)  # BEGIN
    paused = await world.control(Control.PAUSE)
    assert (paused.phase, paused.paused_by_user, paused.pause_reason) == ("paused", True, "user")
    held = await world.drive(manager, fence)  # until a pass has nothing to do
    assert held == [Act.START, Act.READY, Act.START, Act.READY], "instances, but no step"
    assert (await world.deployment(2)).phase == "paused"
    assert (await world.env()).canary_share == 0
    resumed = await world.control(Control.RESUME)
    assert (resumed.phase, resumed.paused_by_user) == ("progressing", False)
    with pytest.raises(Conflict, match="not paused by"):
        await world.control(Control.RESUME)
    await world.drive(manager, fence, Phase.SUCCEEDED, number=2)


async def test_a_phase_change_outside_the_transitions_is_rejected(world: World):
    made = await world.deploy(ROLLING)
    async with world.db.transaction() as session:
        with pytest.raises(deployments.PhaseChangeRejected):
            await deployments.change_phase(session, made.id, Phase.SUCCEEDED)
        assert not await deployments.change_phase(session, made.id, Phase.PAUSED, strict=False)
    assert (await world.deployment(1)).phase == "pending"


async def test_a_router_that_died_is_synced_again(world: World):
    manager, fence = await serving_v1(world)
    world.router.crash()
    await manager.reconcile(world.env_id, fence)  # sees it down (OSError), marks dirty
    await manager.reconcile(world.env_id, fence)  # syncs every route again
    assert world.router.running() and world.router.syncs == 2
    key = records.route_key(await world.env())
    assert world.router.pick(key, 0.5) is not None


async def test_a_router_that_cannot_start_is_tried_again_later_not_on_every_pass(world: World):
    """HAProxy refusing to start (a frontend's port taken) costs one try per back-off
    (0.5 s, then 1 s, …), however often the environment is passed; once it starts, the
    routes are all back. Passes 20 ms apart on the manager's own clock, moved by hand."""
    manager, fence = await serving_v1(world)
    now_ms = [1_000_000]  # whole milliseconds: the back-off's sums stay exact
    manager.monotonic = lambda: now_ms[0] / 1000
    world.router.crash()
    world.router.refuse_start = "cannot bind socket (Address already in use)"
    tried = world.router.starts_tried  # its first start, by serving_v1

    async def passes(count: int) -> int:
        """`count` passes 20 ms apart; how many the router's back-off turned away."""
        down = 0
        for _ in range(count):
            try:
                await manager.reconcile(world.env_id, fence)
            except RouterDown:
                down += 1
            except RouterError:
                pass  # the try that failed (logged by the driver)
            now_ms[0] += 20
        return down

    # 1.2 s: tries at 0 s and 0.5 s (the next is due at 1.5 s); every other pass waits.
    assert await passes(60) == 58
    assert world.router.starts_tried - tried == 2
    assert not world.router.running()
    # Started again: the next try, at 1.5 s, brings every route back.
    world.router.refuse_start = None
    assert await passes(14) == 14  # up to 1.48 s: not due yet
    await passes(2)
    assert world.router.running() and world.router.starts_tried - tried == 3
    assert world.router.syncs == 2
    key = records.route_key(await world.env())
    assert world.router.pick(key, 0.5) is not None


# -- intents, leases and fencing, on SQLite and PostgreSQL -----------------------------


async def test_an_intent_left_open_by_a_dead_driver_is_done_once_by_the_next(shared: World):
    world = shared
    await world.deploy(ROLLING)
    first = world.manager("replica-a", lease_s=0.2)
    fence = await claimed(first, world)
    async with world.db.transaction() as session:
        driven = await first.load(session, world.env_id)
    world_view, _ = await first._observe(world.env_id, fence, driven)
    # Replica a records BEGIN's intent and dies before carrying it out.
    await first._intend(world.env_id, fence, driven, Action(Act.BEGIN, numbers=(1,)), world_view)
    second = world.manager("replica-b")
    await _wait_lease_free(world)
    taken = await claimed(second, world)
    assert taken == fence + 1
    redone = await second.reconcile(world.env_id, taken)
    assert redone is not None and redone.act is Act.BEGIN
    assert second.stats.redone == 1
    assert (await world.deployment(1)).phase == "progressing"
    acts = await world.drive(second, taken, Phase.SUCCEEDED)
    assert Act.BEGIN not in acts, "the redone intent is not taken again"


async def test_a_started_instance_is_adopted_not_started_twice_on_redo(shared: World):
    world = shared
    await world.deploy(ROLLING)
    first = world.manager("replica-a", lease_s=0.2)
    fence = await claimed(first, world)
    await first.reconcile(world.env_id, fence)  # BEGIN
    async with world.db.transaction() as session:
        driven = await first.load(session, world.env_id)
    view, _ = await first._observe(world.env_id, fence, driven)
    start = Action(Act.START, slot="a", digest=driven.plan_row.digest)  # type: ignore[union-attr]
    _, params = await first._intend(world.env_id, fence, driven, start, view)
    # The process started, and replica a died before marking the intent done.
    async with world.db.transaction() as session:
        row = await environments.instance(session, _uuid(params["new_instance"]))
    assert row is not None

    assert driven.runtime is not None
    await first.local.start(row, driven.runtime)
    assert len(world.target.starts) == 1
    second = world.manager("replica-b")
    await _wait_lease_free(world)
    taken = await claimed(second, world)
    await world.drive(second, taken, Phase.SUCCEEDED)
    assert len(world.target.starts) == 2, "one adopted, one more started for replicas: 2"


async def test_a_replica_that_lost_its_lease_writes_nothing(shared: World):
    world = shared
    await world.deploy(ROLLING)
    stale = world.manager("replica-a", lease_s=0.2)
    old = await claimed(stale, world)
    await _wait_lease_free(world)
    fresh = world.manager("replica-b")
    new = await claimed(fresh, world)
    assert new == old + 1
    with pytest.raises(EnvironmentLeaseLost):
        await stale.reconcile(world.env_id, old)
    assert (await world.deployment(1)).phase == "pending", "the stale pass changed nothing"
    async with world.db.transaction() as session:
        assert not await environments.renew_lease(session, world.env_id, old, "replica-a", 1)
        assert await environments.renew_lease(session, world.env_id, new, "replica-b", 30)
    await world.drive(fresh, new, Phase.SUCCEEDED)


async def test_a_free_environment_is_claimed_by_one_replica_only(shared: World):
    world = shared
    await world.deploy(ROLLING)
    managers = [world.manager(f"replica-{n}") for n in range(3)]
    claims = []
    for manager in managers:
        async with world.db.transaction() as session:
            claims.append(await environments.claim_free(session, manager.owner, 30))
    assert [len(c) for c in claims] == [1, 0, 0]


async def test_the_claim_loop_renews_the_leases_of_drivers_that_pass(world: World):
    """One statement renews the lease of every environment with a driver; one whose pass
    has run for over STUCK_PASS_S lets its lease run out, and the next claim replaces
    its driver."""
    manager, fence = await serving_v1(world)
    manager.tick_s = manager.idle_tick_s = 5.0  # one pass, then a long wait
    env_id = world.env_id
    manager.wakeups[env_id] = asyncio.Event()
    first = manager.drivers[env_id] = asyncio.create_task(manager._drive(env_id, fence))
    try:
        before = as_utc((await world.env()).lease_until)
        await asyncio.sleep(0.05)
        assert await manager.renew() == 1
        assert as_utc((await world.env()).lease_until) > before
        manager.passing_since[env_id] = time.monotonic() - 61  # as if its pass hung
        assert await manager.renew() == 0
        async with world.db.transaction() as session:  # and its lease ran out
            await session.execute(
                update(Environment)
                .where(Environment.id == env_id)
                .values(lease_until=utcnow() - timedelta(seconds=1))
            )
        assert await manager.claim() == [env_id]
        second = manager.drivers[env_id]
        assert second is not first and not second.done()
        with contextlib.suppress(asyncio.CancelledError):
            await first  # replaced: cancelled
        assert manager.drivers[env_id] is second, "the old driver's end leaves the new one"
        assert await manager.renew() == 1, "the new driver's lease is renewed"
    finally:
        for task in manager.drivers.values():
            task.cancel()
        await asyncio.gather(*manager.drivers.values(), return_exceptions=True)


async def _wait_lease_free(world: World) -> None:
    async def free() -> bool:
        env = await world.env()
        return env.lease_until is None or as_utc(env.lease_until) < utcnow()

    await wait_until_async(free, timeout=5)


def _uuid(value: object) -> uuid.UUID:
    return uuid.UUID(str(value))


async def test_each_deployment_tells_its_life_in_events(world: World):
    """started, paused, resumed, succeeded (the first `first`), aborted, rolled back:
    written with the phase changes, each once, however many steps a rollout takes."""
    manager, fence = await serving_v1(world)
    await world.deploy({"kind": "canary", "steps": [{"weight": 30.0}, {"weight": 60.0}]})
    await world.manager().reconcile(world.env_id, fence)  # BEGIN
    await world.control(Control.PAUSE)
    await world.drive(manager, fence)
    await world.control(Control.RESUME)
    await world.drive(manager, fence, Phase.SUCCEEDED, number=2)
    await world.deploy({"kind": "canary", "steps": [{"weight": 30.0}, {"pause": None}]})
    await world.drive(manager, fence, Phase.PAUSED, number=3)
    await world.control(Control.ABORT)
    await world.drive(manager, fence, Phase.ABORTED, number=3)
    back = await world.rollback()
    await world.drive(manager, fence, Phase.SUCCEEDED, number=back.number)
    async with world.db.transaction() as session:
        found = await events.latest(session, world.project.team_id, world.project.id, 100)
    told = [(e.type, e.data["deployment"]["number"]) for e in reversed(found)]
    assert told == [
        ("deployment.started", 1),
        ("deployment.succeeded", 1),
        ("deployment.started", 2),
        ("deployment.paused", 2),
        ("deployment.resumed", 2),
        ("deployment.succeeded", 2),
        ("deployment.started", 3),
        ("deployment.paused", 3),
        ("deployment.aborted", 3),
        ("deployment.started", 4),
        ("deployment.rolled_back", 4),
    ]
    first, second = (e for e in reversed(found) if e.type == "deployment.succeeded")
    assert first.data["deployment"]["first"] and not second.data["deployment"]["first"]
    assert {e.data["environment"] for e in found} == {"prod"}
    aborted = next(e for e in found if e.type == "deployment.aborted")
    assert aborted.data["deployment"]["message"].startswith("aborted by")
    async with world.db.transaction() as session:
        chain = await audit.page(session, audit.chain_of(world.project.team_id))
    audited = [
        (e.action, e.target.rsplit("#", 1)[1], e.detail.get("command")) for e in chain.entries
    ]
    assert audited == [
        ("deploy", "1", None),
        ("deploy", "2", None),
        ("control", "2", "pause"),
        ("control", "2", "resume"),
        ("deploy", "3", None),
        ("control", "3", "abort"),
        ("rollback", "4", None),
    ]
    rolled = chain.entries[-1]
    assert rolled.detail["pinned"] == chain.entries[1].detail["digest"]  # revision 2's
    assert (rolled.detail["from"], rolled.detail["to"], rolled.detail["trigger"]) == (
        2,
        1,
        "manual",
    )


async def test_a_deployment_s_actions_join_the_trace_it_was_queued_in(
    world: World, spans: InMemorySpanExporter
):
    """Each action the driver takes is a span in the trace of the request that queued the
    deployment (here a span standing for that request), however many passes later."""
    manager, fence = await serving_v1(world)
    spans.clear()
    with tracing.span("POST /api/v1/projects/{team}/{project}/deployments") as request:
        queued = await world.deploy({"kind": "canary", "steps": [{"weight": 50.0}]})
    assert queued.traceparent is not None
    await world.drive(manager, fence, Phase.SUCCEEDED, number=queued.number)
    trace_id = request.get_span_context().trace_id
    actions = [s for s in spans.get_finished_spans() if s.name.startswith("deploy.")]
    assert {s.name for s in actions} >= {"deploy.begin", "deploy.start", "deploy.split"}
    for action in actions:
        assert action.context is not None and action.context.trace_id == trace_id
        assert action.parent is not None
        assert action.parent.span_id == request.get_span_context().span_id
        assert action.attributes is not None
        assert action.attributes["conveyor.deployment"] == queued.number
    shares = [s.attributes["conveyor.share"] for s in actions if s.name == "deploy.split"]
    assert shares and shares[0] == 5000  # in hundredths of a percent


class SteppedWaits:
    """A driver's waits between passes, each one answered by the test: it ends when the
    test says the time has passed, or when the environment is poked."""

    def __init__(self) -> None:
        self.asked: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()

    async def __call__(self, event: asyncio.Event, seconds: float) -> bool:
        passed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.asked.put_nowait((seconds, passed))
        poked = asyncio.ensure_future(event.wait())
        await asyncio.wait({passed, poked}, return_when=asyncio.FIRST_COMPLETED)
        poked.cancel()
        return event.is_set()

    async def next(self) -> tuple[float, asyncio.Future[None]]:
        async with asyncio.timeout(10):
            return await self.asked.get()

    async def passed(self) -> float:
        """The next wait the driver asks for, answered as timed out."""
        seconds, passed = await self.next()
        passed.set_result(None)
        return seconds


async def test_a_settled_environment_is_passed_less_often_until_it_is_poked(world: World):
    """Nothing deploying and nothing queued: the driver's passes go twice as far apart
    each time, up to `idle_tick_s`; a poke (a deploy asked on this replica) runs the next
    pass at once, and passes go back to `tick_s` while the deployment moves."""
    manager, fence = await serving_v1(world)
    manager.tick_s, manager.idle_tick_s = 0.02, 0.32
    manager.between_passes = waits = SteppedWaits()
    manager.wakeups[world.env_id] = asyncio.Event()
    driver = asyncio.create_task(manager._drive(world.env_id, fence))
    try:
        asked = [await waits.passed() for _ in range(6)]
        assert asked == [0.04, 0.08, 0.16, 0.32, 0.32, 0.32], asked
        assert manager.settled[world.env_id] is True
        # A timed pause: passes with nothing to do while the deployment is under way.
        await world.deploy({"kind": "canary", "steps": [{"weight": 50.0}, {"pause": 60.0}]})
        seconds, _ = await waits.next()
        assert seconds == 0.32, "settled: it waits as long as it may"
        passes = manager.stats.passes
        manager.poke(world.env_id)
        # The poke ends that wait: the next pass loads the deployment, acts on it (the
        # weight) and then, with the pause to wait out, waits `tick_s` each time.
        after_poke = [await waits.passed() for _ in range(3)]
        assert manager.stats.passes > passes
        assert manager.settled[world.env_id] is False
        assert after_poke == [manager.tick_s] * 3, after_poke
    finally:
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
