"""The planner as pure scenarios: given what is wanted and seen, the next action."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.deploy.planner import decide
from conveyor.deploy.planner.rules import RESTART_DOWN_AFTER_S
from conveyor.deploy.world import (
    Act,
    Kind,
    Rollout,
    Seen,
    Settled,
    Step,
    StepKind,
    World,
    resolve,
    share_of,
    traffic,
)
from conveyor.domain.deploy import DriverRequest, InstanceState, PauseReason, Phase
from conveyor.hosting.routing import RouterError, ServerStatus

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD, NEW = "sha256:" + "1" * 64, "sha256:" + "2" * 64
READY, STARTING, DRAINING = InstanceState.READY, InstanceState.STARTING, InstanceState.DRAINING


def up(weight: int = 100, sessions: int = 0) -> ServerStatus:
    return ServerStatus("s", "be", "UP", "L7OK", weight, sessions, 0, 0, 0)


def inst(
    id: str, digest: str = OLD, slot: str = "a", state: InstanceState = READY, **kw: object
) -> Seen:
    defaults: dict[str, object] = {"alive": True, "router": up() if state is READY else None}
    return Seen(id=id, digest=digest, slot=slot, state=state, **(defaults | kw))  # type: ignore[arg-type]


def stable(**kw: object) -> Settled:
    base = Settled(stable_slot="a", revision=1, digest=OLD, replicas=2, drain_s=5.0)
    return replace(base, **kw)  # type: ignore[arg-type]


def plan(kind: Kind = Kind.CANARY, steps: tuple[Step, ...] = (), **kw: object) -> Rollout:
    base = Rollout(
        number=2,
        digest=NEW,
        kind=kind,
        steps=steps,
        replicas=2,
        phase=Phase.PROGRESSING,
        step=0,
        step_started=NOW,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def world(env: Settled, p: Rollout | None, *seen: Seen, **kw: object) -> World:
    return World(env=env, plan=p, instances=seen, now=NOW, **kw)  # type: ignore[arg-type]


V1 = (inst("o1"), inst("o2"))
CANARY = (inst("n1", NEW, "b"), inst("n2", NEW, "b"))


def test_a_queued_deployment_begins_and_newest_wins_supersedes_the_rest():
    assert decide(world(stable(), None, *V1, pending=(3, 4))).numbers == (3,)
    superseded = decide(world(stable(), None, *V1, pending=(3, 4, 5), newest_wins=True))
    assert superseded is not None and superseded.act is Act.SUPERSEDE
    assert superseded.numbers == (3, 4)


def test_a_canary_starts_its_instances_in_the_other_slot():
    action = decide(world(stable(), plan(), *V1))
    assert action is not None and (action.act, action.slot, action.digest) == (Act.START, "b", NEW)


def test_a_starting_instance_that_answers_its_health_check_becomes_ready():
    starting = inst("n1", NEW, "b", STARTING, probe_ok=True)
    action = decide(world(stable(), plan(), *V1, starting, inst("n2", NEW, "b", STARTING)))
    assert action is not None and (action.act, action.instance) == (Act.READY, "n1")


def test_canary_steps_set_the_split_then_advance_and_pause():
    steps = (Step(StepKind.WEIGHT, weight=12.5), Step(StepKind.PAUSE, seconds=30))
    action = decide(world(stable(), plan(steps=steps), *V1, *CANARY))
    assert action is not None and (action.act, action.share) == (Act.SPLIT, 1250)
    at_weight = stable(canary_share=1250)
    action = decide(world(at_weight, plan(steps=steps), *V1, *CANARY))
    assert action is not None and (action.act, action.step) == (Act.ADVANCE, 1)
    pausing = plan(steps=steps, step=1, step_started=NOW - timedelta(seconds=10))
    action = decide(world(at_weight, pausing, *V1, *CANARY))
    assert action is not None and (action.act, action.reason) == (Act.PAUSE, "timed")
    waiting = replace(pausing, phase=Phase.PAUSED, pause_reason=PauseReason.TIMED)
    assert decide(world(at_weight, waiting, *V1, *CANARY)) is None
    done_waiting = replace(waiting, step_started=NOW - timedelta(seconds=31))
    action = decide(world(at_weight, done_waiting, *V1, *CANARY))
    assert action is not None and (action.act, action.step) == (Act.ADVANCE, 2)


def test_a_bare_pause_and_an_analysis_wait_for_promote():
    for step, reason in (
        (Step(StepKind.PAUSE), PauseReason.PROMOTION),
        (Step(StepKind.ANALYSIS), PauseReason.ANALYSIS),
    ):
        waiting = plan(steps=(step,), phase=Phase.PAUSED, pause_reason=reason)
        assert decide(world(stable(), waiting, *V1, *CANARY)) is None
        promoted = replace(waiting, request=DriverRequest.PROMOTE, requested_by="alice")
        action = decide(world(stable(), promoted, *V1, *CANARY))
        assert action is not None and action.act is Act.ADVANCE
        assert action.reason == "promoted by alice"


def test_promote_full_skips_every_step_and_the_end_promotes_by_relabelling():
    steps = (Step(StepKind.WEIGHT, weight=10), Step(StepKind.PAUSE))
    full = plan(steps=steps, request=DriverRequest.PROMOTE_FULL)
    action = decide(world(stable(), full, *V1, *CANARY))
    assert action is not None and (action.act, action.step) == (Act.ADVANCE, 2)
    end = plan(steps=steps, step=2)
    action = decide(world(stable(canary_share=1000), end, *V1, *CANARY))
    assert action is not None and (action.act, action.share) == (Act.SPLIT, 10_000)
    action = decide(world(stable(canary_share=10_000), end, *V1, *CANARY))
    assert action is not None and (action.act, action.slot) == (Act.PROMOTE, "b")
    promoted = stable(revision=2, digest=NEW, stable_slot="b")
    action = decide(world(promoted, end, *V1, *CANARY))
    assert action is not None and (action.act, action.phase) == (Act.FINISH, Phase.SUCCEEDED)


def test_abort_moves_traffic_first_then_finishes():
    asked = plan(steps=(Step(StepKind.PAUSE),), request=DriverRequest.ABORT)
    action = decide(world(stable(canary_share=5000), asked, *V1, *CANARY))
    assert action is not None and (action.act, action.share) == (Act.SPLIT, 0)
    action = decide(world(stable(), asked, *V1, *CANARY))
    assert action is not None and (action.act, action.phase) == (Act.FINISH, Phase.ABORTED)
    assert not action.pin


def test_the_health_rule_aborts_and_pins_a_crashing_or_failing_canary():
    crashing = (inst("n1", NEW, "b", restarts=4), inst("n2", NEW, "b"))
    action = decide(world(stable(canary_share=100), plan(), *V1, *crashing))
    assert action is not None and (action.act, action.share) == (Act.SPLIT, 0)
    action = decide(world(stable(), plan(), *V1, *crashing))
    assert action is not None and action.pin and "crashed 4 times" in action.reason
    failing = (inst("n1", NEW, "b", STARTING, health_failures=3),)
    action = decide(world(stable(), plan(), *V1, *failing))
    assert action is not None and "failed 3 health checks" in action.reason
    down = ServerStatus("s", "be", "DOWN", "L7STS", 100, 0, 0, 0, 0)
    action = decide(world(stable(), plan(), *V1, inst("n1", NEW, "b", router=down)))
    assert action is not None and "in the router" in action.reason


def test_a_dead_stable_instance_is_restarted():
    action = decide(world(stable(), None, inst("o1", alive=False), inst("o2")))
    assert action is not None and (action.act, action.instance) == (Act.RESTART, "o1")


def test_a_stable_instance_down_in_the_router_is_restarted_only_after_a_while():
    def down(seconds: int) -> ServerStatus:
        return ServerStatus("s", "be", "DOWN", "L4TOUT", 100, 0, 0, 0, 0, since_s=seconds)

    blip = (inst("o1", router=down(RESTART_DOWN_AFTER_S - 1)), inst("o2"))
    assert decide(world(stable(), None, *blip)) is None
    lasting = (inst("o1", router=down(RESTART_DOWN_AFTER_S)), inst("o2"))
    action = decide(world(stable(), None, *lasting))
    assert action is not None and (action.act, action.instance) == (Act.RESTART, "o1")
    assert action.reason == "down in the router"


def test_rolling_surges_one_then_drains_without_losing_capacity():
    rolling = plan(Kind.ROLLING, surge=1, unavailable=0)
    action = decide(world(stable(), rolling, *V1))
    assert action is not None and (action.act, action.slot) == (Act.START, "a")
    one_new = (*V1, inst("n1", NEW, "a", STARTING))
    assert decide(world(stable(), rolling, *one_new)) is None  # surge used; waits for health
    serving = (*V1, inst("n1", NEW, "a"))
    action = decide(world(stable(), rolling, *serving))
    assert action is not None and action.act is Act.DRAIN and action.instance in {"o1", "o2"}
    draining = (inst("o1", state=DRAINING, draining_s=0.1), inst("o2"), inst("n1", NEW, "a"))
    assert decide(world(stable(), rolling, *draining)) is None  # surge still in use
    drained = (inst("o1", state=DRAINING, draining_s=0.3), inst("o2"), inst("n1", NEW, "a"))
    action = decide(world(stable(), rolling, *drained))
    assert action is not None and (action.act, action.instance) == (Act.STOP, "o1")
    busy = (inst("o1", state=DRAINING, draining_s=6.0, router=up(sessions=3)),)
    action = decide(world(stable(), rolling, *busy, inst("o2"), inst("n1", NEW, "a")))
    assert action is not None and action.act is Act.STOP  # past the drain time
    done = (inst("n1", NEW, "a"), inst("n2", NEW, "a"))
    action = decide(world(stable(), rolling, *done))
    assert action is not None and (action.act, action.slot) == (Act.PROMOTE, "a")


def test_max_unavailable_lets_rolling_drain_before_surging():
    rolling = plan(Kind.ROLLING, surge=0, unavailable=1)
    action = decide(world(stable(), rolling, *V1))
    assert action is not None and action.act is Act.DRAIN


def test_the_previous_stable_stays_warm_until_its_time_and_not_when_pinned():
    warm = stable(
        stable_slot="b", digest=NEW, revision=2, warm_digest=OLD, warm_until=NOW + timedelta(30)
    )
    current = (inst("n1", NEW, "b"), inst("n2", NEW, "b"))
    assert decide(world(warm, None, *V1, *current)) is None
    expired = replace(warm, warm_until=NOW - timedelta(seconds=1))
    action = decide(world(expired, None, *V1, *current))
    assert action is not None and action.act is Act.DRAIN and action.instance in {"o1", "o2"}
    action = decide(world(warm, None, *V1, *current, pinned=frozenset({OLD})))
    assert action is not None and action.act is Act.DRAIN


def test_a_switch_back_uses_the_warm_slot():
    warm = stable(
        stable_slot="b", digest=NEW, revision=2, warm_digest=OLD, warm_until=NOW + timedelta(30)
    )
    current = (inst("n1", NEW, "b"), inst("n2", NEW, "b"))
    switch = plan(Kind.SWITCH, digest=OLD, number=3)
    action = decide(world(warm, switch, *V1, *current))
    assert action is not None and (action.act, action.share) == (Act.SPLIT, 10_000)


def test_a_ready_instance_the_router_has_not_reported_is_not_stopped():
    unknown = (inst("o1", router=None), inst("o2", router=None))
    expired = stable(stable_slot="b", digest=NEW, warm_digest=OLD, warm_until=NOW)
    assert decide(world(expired, None, *unknown, *CANARY)) is None


def test_a_user_pause_holds_the_steps_but_not_the_instances():
    held = plan(steps=(Step(StepKind.WEIGHT, weight=50),), paused_by_user=True, phase=Phase.PAUSED)
    assert decide(world(stable(), held, *V1, *CANARY)) is None
    action = decide(world(stable(), held, *V1))
    assert action is not None and action.act is Act.START


@pytest.mark.parametrize(
    ("amount", "up_", "expected"),
    [(1, True, 1), ("25%", True, 1), ("25%", False, 0), ("50%", False, 1)],
)
def test_amounts_resolve_like_kubernetes(amount: int | str, up_: bool, expected: int):
    assert resolve(amount, 2, round_up=up_) == expected


def test_shares_and_the_readable_split():
    assert share_of(0.01) == 1 and share_of(100) == 10_000
    split = traffic(stable(canary_share=2500))
    assert (split.stable, split.canary, split.canary_slot) == (75.0, 25.0, "b")


def test_a_missing_haproxy_is_an_error_that_names_the_package(monkeypatch: pytest.MonkeyPatch):
    from conveyor.hosting import haproxy

    monkeypatch.setattr(haproxy.shutil, "which", lambda _: None)
    monkeypatch.setattr(haproxy.os, "access", lambda *_: False)
    with pytest.raises(RouterError, match="install the `haproxy` package"):
        haproxy.find_haproxy()


def test_each_action_records_what_was_wanted_and_seen():
    from conveyor.deploy.planner import states

    steps = (Step(StepKind.WEIGHT, weight=25),)
    desired, observed = states(world(stable(canary_share=0), plan(steps=steps), *V1, *CANARY))
    assert desired == {
        "slots": {"a": {"digest": OLD, "replicas": 2}, "b": {"digest": NEW, "replicas": 2}},
        "stable_slot": "a",
        "canary_share": 2500,
    }
    assert observed == {
        "serving": {"a": {OLD: 2}, "b": {NEW: 2}},
        "live": 4,
        "canary_share": 0,
        "stable_slot": "a",
    }


def test_a_check_in_progress_reads_as_its_last_result():
    """HAProxy's `show stat` says `* L7OK` while the next check runs (issue 19 §1.2)."""
    in_progress = ServerStatus("s", "be", "UP", "* L7OK", 100, 14, 0, 0, 0)
    assert in_progress.check_result == "L7OK" and in_progress.healthy
    assert not ServerStatus("s", "be", "UP", "* L7STS", 100, 0, 0, 0, 0).healthy


def test_a_replaced_instance_that_holds_sessions_is_drained_never_stopped_at_once():
    rolling = plan(Kind.ROLLING, surge=1, unavailable=0)
    checking = ServerStatus("s", "be", "UP", "* L7OK", 100, 14, 0, 0, 0)
    serving = (inst("o1", router=checking), inst("o2"), inst("n1", NEW, "a"), inst("n2", NEW, "a"))
    action = decide(world(stable(), rolling, *serving))
    assert action is not None and action.act is Act.DRAIN, action
    # A failed check leaves HAProxy sending it requests until `fall` checks failed: drain.
    failing = ServerStatus("s", "be", "UP", "L7STS", 100, 3, 0, 0, 0)
    action = decide(world(stable(), rolling, inst("o1", router=failing), *serving[1:]))
    assert action is not None and (action.act, action.instance) == (Act.DRAIN, "o1")
    # Down in the router with no sessions left: nothing to drain, it is stopped.
    gone = ServerStatus("s", "be", "DOWN", "L7STS", 100, 0, 0, 0, 0)
    action = decide(world(stable(), rolling, inst("o1", router=gone), *serving[1:]))
    assert action is not None and (action.act, action.instance) == (Act.STOP, "o1")


def test_a_placement_that_cannot_be_met_pauses_with_its_reason_and_goes_on_by_itself():
    reason = "placed none of 1 instances; of 2 hosts: 1 lost, 1 full (4 slots)"
    held = decide(world(stable(), plan(), *V1, no_room=reason))
    assert held is not None and held.act is Act.PAUSE
    assert (held.reason, held.message) == (PauseReason.PLACEMENT.value, reason)
    waiting = plan(phase=Phase.PAUSED, pause_reason=PauseReason.PLACEMENT)
    assert decide(world(stable(), waiting, *V1, no_room=reason)) is None
    released = decide(world(stable(), waiting, *V1))
    assert released is not None and released.act is Act.RELEASE
    # Room for the old revision's instances is not the rollout's to wait for.
    dead = inst("o2", alive=False)
    restarted = decide(world(stable(), None, inst("o1"), dead, no_room=reason))
    assert restarted is not None and restarted.act is Act.RESTART


def test_pre_deploy_commands_on_the_fleet_wait_for_a_host_that_can_run_them():
    checked = plan(pre_deploy=True)
    first = decide(world(stable(), checked, *V1))
    assert first is not None and first.act is Act.PRE_DEPLOY
    reason = "placed none of 1 instances; of 1 host: 1 lost"
    held = decide(world(stable(), checked, *V1, no_room=reason))
    assert held is not None and (held.act, held.reason, held.message) == (
        Act.PAUSE,
        PauseReason.PLACEMENT.value,
        reason,
    )
    waiting = replace(checked, phase=Phase.PAUSED, pause_reason=PauseReason.PLACEMENT)
    assert decide(world(stable(), waiting, *V1, no_room=reason)) is None
    released = decide(world(stable(), waiting, *V1))
    assert released is not None and released.act is Act.RELEASE


def test_an_instance_whose_host_leaves_is_replaced_first_then_drained():
    leaving = inst("o2", leaving=True)
    first = decide(world(stable(), None, inst("o1"), leaving))
    assert first is not None and (first.act, first.slot, first.digest) == (Act.START, "a", OLD)
    replaced = (inst("o1"), leaving, inst("o3"))
    then = decide(world(stable(), None, *replaced))
    assert then is not None and (then.act, then.instance) == (Act.DRAIN, "o2")
    # No host can take the replacement: the slot waits as it is (nothing to pause).
    assert decide(world(stable(), None, inst("o1"), leaving, no_room="no hosts")) is None
