"""Approvals and the gate, driven in-process on SQLite and PostgreSQL: a deployment that
needs an approval waits paused(approval) and starts nothing; the approval releases it,
even when another replica drives the environment by then; two approvers racing for the
last approval count once; a rejection ends it."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from conveyor.deploy import approvals
from conveyor.deploy.approvals import Approver
from conveyor.deploy.world import Act
from conveyor.domain.clock import utcnow
from conveyor.domain.deploy import PauseReason, Phase
from conveyor.domain.errors import Conflict, Forbidden, Refused
from conveyor.domain.policy import Decision
from conveyor.domain.roles import Role
from conveyor.storage import deployments, environments
from conveyor.storage import policy as rows
from tests.deploy.inprocess import ROLLING, World, claimed, serving_v1

ONE = Decision(required=1, reasons=("prod requires 1 approval by a maintainer",))
ANNA = Approver("subject-anna", "token 'anna' (maintainer)", Role.MAINTAINER)
BOB = Approver("subject-bob", "token 'bob' (maintainer)", Role.MAINTAINER)


async def decide(world: World, number: int, who: Approver, verdict: str) -> None:
    async with world.db.transaction() as session:
        row = await deployments.numbered(session, world.env_id, number)
        assert row is not None
        await approvals.decide(session, row, who, verdict, "")


async def test_a_deployment_waits_for_its_approval_then_rolls_out(shared: World):
    world = shared
    await world.deploy(ROLLING, decision=ONE, requester="subject-dev")
    manager = world.manager("replica-a", lease_s=0.3)
    fence = await claimed(manager, world)
    acts = await world.drive(manager, fence, Phase.PAUSED)
    assert acts == [Act.BEGIN, Act.PAUSE]
    held = await world.deployment(1)
    assert held.pause_reason == PauseReason.APPROVAL.value and held.released_at is None
    assert held.message == "prod requires 1 approval by a maintainer"
    # Waiting changes nothing: more passes start no instance of it.
    assert await world.drive(manager, fence) == []
    assert world.target.live() == []

    # The one who asked may not approve it; a maintainer may.
    with pytest.raises(Forbidden, match="cannot approve"):
        await decide(world, 1, Approver("subject-dev", "dev", Role.OWNER), approvals.APPROVE)
    await decide(world, 1, ANNA, approvals.APPROVE)
    # Another replica drives the environment by now: the approval is a row, not memory.
    other = world.manager(owner="replica-b")
    deadline = asyncio.get_running_loop().time() + 10
    while not (taken := await _claim(other, world)):
        assert asyncio.get_running_loop().time() < deadline, "the lease never ran out"
        await asyncio.sleep(0.05)
    acts = await world.drive(other, taken, Phase.SUCCEEDED)
    assert acts[0] is Act.RELEASE and acts[-1] is Act.FINISH and Act.START in acts
    done = await world.deployment(1)
    assert done.released_at is not None and done.approved_at is not None
    assert done.started_at is not None and done.started_at >= done.approved_at


async def _claim(manager, world: World) -> int:  # type: ignore[no-untyped-def]
    async with world.db.transaction() as session:
        free = await environments.claim_free(session, manager.owner, manager.lease_s)
    return next((f for env_id, f in free if env_id == world.env_id), 0)


async def test_two_approvers_racing_for_the_last_approval_count_once(shared: World):
    world = shared
    await world.deploy(ROLLING, decision=ONE)
    outcomes = await asyncio.gather(
        decide(world, 1, ANNA, approvals.APPROVE),
        decide(world, 1, BOB, approvals.APPROVE),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, Refused)]
    assert len(refused) == 1 and isinstance(refused[0], Conflict), outcomes
    assert "approved already" in str(refused[0])
    async with world.db.transaction() as session:
        decided = await rows.approvals(session, [(await world.deployment(1)).id])
    assert len(decided) == 1


async def test_a_rejected_deployment_ends_before_it_starts(shared: World):
    world = shared
    await world.deploy(ROLLING, decision=ONE)
    manager = world.manager()
    fence = await claimed(manager, world)
    await world.drive(manager, fence, Phase.PAUSED)
    await decide(world, 1, BOB, approvals.REJECT)
    acts = await world.drive(manager, fence, Phase.ABORTED)
    assert acts == [Act.FINISH]
    ended = await world.deployment(1)
    assert ended.message == "rejected by token 'bob' (maintainer)"
    assert world.target.live() == []


async def test_approvals_that_do_not_come_in_time_end_it_as_rejected(world: World):
    await world.deploy(ROLLING, decision=replace(ONE, approval_timeout=3600))
    ahead = timedelta()
    manager = world.manager(clock=lambda: utcnow() + ahead)
    fence = await claimed(manager, world)
    await world.drive(manager, fence, Phase.PAUSED)
    ahead = timedelta(minutes=59)  # not yet: it goes on waiting
    assert await world.drive(manager, fence) == []
    assert (await world.deployment(1)).phase == Phase.PAUSED.value
    ahead = timedelta(minutes=60, seconds=1)
    acts = await world.drive(manager, fence, Phase.ABORTED)
    assert acts == [Act.FINISH]
    ended = await world.deployment(1)
    assert ended.message == "rejected: no approval within 1h"
    assert world.target.live() == []


async def test_stop_the_line_halts_a_canary_before_its_next_step_and_a_rollback_goes_on(
    world: World,
):
    manager, fence = await serving_v1(world)
    canary = {"kind": "canary", "steps": [{"weight": 20.0}, {"weight": 60.0}]}
    await world.deploy(canary)
    for _ in range(100):  # on until the canary takes its first share
        action = await manager.reconcile(world.env_id, fence)
        if action is not None and action.act is Act.SPLIT:
            break
    assert (await world.env()).canary_share > 0
    async with world.db.transaction() as session:
        await rows.set_switch(session, True, "incident", "admin")
    acts = await world.drive(manager, fence, Phase.PAUSED, number=2)
    held = await world.deployment(2)
    assert acts[-1] is Act.PAUSE and held.pause_reason == PauseReason.STOP.value
    share = (await world.env()).canary_share
    assert await world.drive(manager, fence) == []  # held: the split stays where it was
    assert (await world.env()).canary_share == share
    async with world.db.transaction() as session:
        await rows.set_switch(session, False, "", "admin")
    acts = await world.drive(manager, fence, Phase.SUCCEEDED, number=2)
    assert acts[0] is Act.RELEASE and Act.PROMOTE in acts
    # While the line is stopped, a rollback is not held.
    async with world.db.transaction() as session:
        await rows.set_switch(session, True, "incident", "admin")
    await world.rollback()
    await world.drive(manager, fence, Phase.SUCCEEDED, number=3)
    assert (await world.env()).revision == 3
