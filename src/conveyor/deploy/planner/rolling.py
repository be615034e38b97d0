"""Rolling, and the instance replacement every strategy's slot uses: start what a slot
lacks and drain what no slot wants, within `max_surge` and `max_unavailable` when the
new revision replaces the stable one in place (a rolling update), one at a time in the
other slot (a canary or a preview, which takes no traffic until its split says so)."""

from __future__ import annotations

from conveyor.deploy.planner.common import (
    in_place,
    serves_traffic,
    surplus,
    wanted,
)
from conveyor.deploy.world import Act, Action, Step, World
from conveyor.domain.deploy import InstanceState, PauseReason, Phase

PASSED = "passed"
"""A revision's pre_deploy checks passed (its instances may start)."""


def steps() -> tuple[Step, ...]:
    """Rolling has no steps: it promotes once the stable slot holds the new revision."""
    return ()


def blocked(world: World, digest: str) -> bool:
    """The plan's revision waits for its pre_deploy commands to pass."""
    plan = world.plan
    return (
        plan is not None
        and digest == plan.digest
        and plan.pre_deploy
        and plan.pre_deploy_state != PASSED
    )


def start(world: World) -> Action | None:
    plan = world.plan
    surge = plan.surge if plan is not None and in_place(world) else 1
    held = plan is not None and plan.pause_reason is PauseReason.STOP
    for slot, (digest, count) in sorted(wanted(world).items()):
        if blocked(world, digest) or (held and plan is not None and digest == plan.digest):
            continue
        members = [s for s in world.instances if s.slot == slot]
        have = [
            s
            for s in members
            if s.digest == digest and s.state is not InstanceState.DRAINING and not s.leaving
        ]
        if len(have) >= count:
            continue
        in_traffic = slot == world.env.stable_slot or world.env.canary_share > 0
        if in_traffic and len(members) >= count + surge:
            continue
        if plan is not None and digest == plan.digest:
            waiting = plan.phase is Phase.PAUSED and plan.pause_reason is PauseReason.PLACEMENT
            if world.no_room is not None:  # loud, never a hang (Nomad #8139)
                if waiting:
                    return None
                return Action(Act.PAUSE, reason=PauseReason.PLACEMENT.value, message=world.no_room)
            if waiting:
                return Action(Act.RELEASE)  # a host can take it again: it goes on
        elif world.no_room is not None:
            continue  # a settled slot's replacement waits for a host (nothing to pause)
        return Action(Act.START, slot=slot, digest=digest)
    return None


def retire(world: World) -> Action | None:
    """Drain what no slot wants, without going under capacity in a slot that serves."""
    plan = world.plan
    unavailable = plan.unavailable if plan is not None and in_place(world) else 0
    for seen in surplus(world):
        if seen.state is InstanceState.READY and seen.router is None:
            continue  # the router has not reported it yet (it may have just restarted)
        if seen.state is InstanceState.DRAINING:
            continue
        if not (seen.serving or seen.takes_traffic):
            # Never in the traffic (starting, or out of the router): nothing to drain.
            return Action(Act.STOP, instance=seen.id, reason="not wanted")
        if seen.serving and serves_traffic(world, seen.slot):
            _, count = wanted(world).get(seen.slot, ("", 0))
            serving = [s for s in world.instances if s.slot == seen.slot and s.serving]
            if count and len(serving) - 1 < count - unavailable:
                continue
        return Action(Act.DRAIN, instance=seen.id, reason="replaced")
    return None
