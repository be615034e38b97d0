"""What every strategy's rules share: what each slot should hold (the stable slot, the
other slot for a canary or a preview), which instances no slot wants, and who asked for
what. Every environment has two slots; rolling works in place on the stable slot."""

from __future__ import annotations

from conveyor.deploy.world import Act, Action, Judged, Kind, Rollout, Seen, World, other
from conveyor.domain.deploy import DriverRequest, InstanceState, PauseReason, Phase
from conveyor.hosting.routing import SHARE_SCALE


def target_slot(world: World) -> str:
    """Where the plan's revision goes: the stable slot for rolling (and a first deploy),
    the other slot for canary, blue-green and switch."""
    assert world.plan is not None
    if world.plan.kind is Kind.ROLLING or world.env.digest is None:
        return world.env.stable_slot
    return other(world.env.stable_slot)


def in_place(world: World) -> bool:
    return world.plan is not None and target_slot(world) == world.env.stable_slot


def wanted(world: World) -> dict[str, tuple[str, int]]:
    """Per slot: the digest it should run and how many instances."""
    out: dict[str, tuple[str, int]] = {}
    env, plan = world.env, world.plan
    if env.digest is not None and env.replicas > 0:
        out[env.stable_slot] = (env.digest, env.replicas)
    if plan is not None and plan.released and plan.phase.is_active and env.revision != plan.number:
        out[target_slot(world)] = (plan.digest, plan.replicas)
    return out


def warm(world: World, seen: Seen) -> bool:
    """The previous stable revision, kept in the other slot until `warm_until`."""
    env = world.env
    return (
        seen.slot != env.stable_slot
        and env.warm_until is not None
        and world.now < env.warm_until
        and seen.digest == env.warm_digest
        and seen.digest not in world.pinned
        and (
            world.plan is None
            or target_slot(world) == env.stable_slot
            or switching(world)
            or promoted(world)
        )
    )


def promoted(world: World) -> bool:
    """The active deployment's revision is stable already (it bakes)."""
    return world.plan is not None and world.env.revision == world.plan.number


def switching(world: World) -> bool:
    return world.plan is not None and world.plan.kind is Kind.SWITCH


def surplus(world: World) -> list[Seen]:
    """Live instances no slot wants: another digest, or more than the count."""
    want = wanted(world)
    out: list[Seen] = []
    by_slot: dict[str, list[Seen]] = {}
    for seen in world.instances:
        by_slot.setdefault(seen.slot, []).append(seen)
    for slot, members in by_slot.items():
        digest, count = want.get(slot, ("", 0))
        keep = [
            m
            for m in members
            if m.digest == digest and m.state is not InstanceState.DRAINING and not m.leaving
        ]
        # Keep the healthiest: serving first, then ready, then starting.
        keep.sort(key=lambda m: (not m.serving, m.state is not InstanceState.READY))
        kept = {m.id for m in keep[:count]}
        out += [m for m in members if m.id not in kept and not warm(world, m)]
    return out


def complete(world: World, slot: str, digest: str, count: int) -> bool:
    """The slot holds exactly `count` serving instances of `digest`, and nothing else."""
    members = [s for s in world.instances if s.slot == slot]
    serving = [s for s in members if s.digest == digest and s.serving]
    return len(serving) == count and len(members) == count


def serves_traffic(world: World, slot: str) -> bool:
    share = world.env.canary_share
    return share < SHARE_SCALE if slot == world.env.stable_slot else share > 0


def pause_inconclusive(plan: Rollout, run: Judged) -> Action | None:
    if plan.phase is Phase.PAUSED and plan.pause_reason is PauseReason.ANALYSIS:
        return None
    why = f"analysis {run.template} is inconclusive: {run.reason}; `promote` or `abort`"
    return Action(Act.PAUSE, reason=PauseReason.ANALYSIS.value, message=why)


def who_asked(plan: Rollout) -> str:
    return plan.requested_by or "request"


def promote_requested(plan: Rollout) -> bool:
    return plan.request in (DriverRequest.PROMOTE, DriverRequest.PROMOTE_FULL)
