"""Protection rules and the gate, as pure functions: what the rules decide for a
deployment, and what holds it at its gate; then the planner's gate rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.deploy.planner import decide as plan_next
from conveyor.deploy.world import Act, Step, StepKind
from conveyor.domain import policy
from conveyor.domain.deploy import PauseReason, Phase
from conveyor.domain.freeze import Window
from conveyor.domain.policy import Decision, Gate, OnTimeout, Rules
from conveyor.domain.roles import Role
from conveyor.pipeline.patterns import glob_matches
from tests.deploy.test_planner import NEW, V1, inst, plan, stable, world

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def decide(rules: Rules, **kw: object) -> Decision:
    args: dict[str, object] = {"branch": "main", "risk": None} | kw
    return policy.decide(rules, "production", branch_allowed=glob_matches, **args)  # type: ignore[arg-type]


def test_rules_parse_with_the_field_named_in_every_error():
    parsed = policy.parse(
        {"required_approvals": 2, "approver_role": "owner", "wait_timer": 30, "timezone": "UTC"}
    )
    assert parsed == {
        "required_approvals": 2,
        "approver_role": Role.OWNER,
        "wait_timer": 30.0,
        "timezone": "UTC",
    }
    for raw, where in (
        ({"required_approvals": 11}, "rules.required_approvals: a whole number from 0 to 10"),
        ({"required_approvals": True}, "rules.required_approvals"),
        ({"approver_role": "boss"}, "rules.approver_role: one of viewer"),
        ({"wait_timer": -1}, "rules.wait_timer: seconds, 0 or more"),
        ({"auto_approve_below": 101}, "rules.auto_approve_below: a risk score from 0 to 100"),
        ({"allowed_branches": "main"}, "rules.allowed_branches: a list of branch globs"),
        ({"timezone": "Mars/Olympus"}, "rules.timezone: 'Mars/Olympus' is not an IANA"),
        ({"colour": "red"}, "rules.colour: not a rule"),
    ):
        with pytest.raises(policy.RuleError) as caught:
            policy.parse(raw)
        assert str(caught.value).startswith(where), caught.value


def test_the_servers_settings_win_over_conveyor_yml_field_by_field():
    rules = policy.merged(
        {"required_approvals": 1, "approver_role": "developer", "wait_timer": 60},
        {"approver_role": "owner", "auto_approve_below": 30},
    )
    assert rules.required_approvals == 1  # from conveyor.yml
    assert rules.approver_role is Role.OWNER  # the server's wins
    assert (rules.wait_timer, rules.auto_approve_below) == (60.0, 30)
    assert policy.merged({}, {}) == Rules() and not Rules().protected
    with pytest.raises(policy.RuleError, match=r"^server\.required_approvals"):
        policy.merged({}, {"required_approvals": -1})


def test_no_rules_need_no_approval():
    decided = decide(Rules())
    assert decided.required == 0 and decided.reasons == ()


def test_required_approvals_are_asked_for_with_the_reason():
    decided = decide(Rules(required_approvals=2, approver_role=Role.OWNER))
    assert decided.required == 2 and decided.approver_role is Role.OWNER
    assert decided.reasons == ("production requires 2 approvals by a owner",)


def test_a_low_risk_change_is_approved_automatically_and_a_risky_one_waits():
    rules = Rules(required_approvals=1, auto_approve_below=40)
    low = decide(rules, risk=12)
    assert low.required == 0 and low.risk == 12
    assert "risk 12 is below 40 (auto_approve_below)" in low.reasons[0]
    high = decide(rules, risk=40)
    assert high.required == 1
    assert high.reasons[1] == "risk 40 is at or above 40 (auto_approve_below)"
    unknown = decide(rules, risk=None)  # no score: a person decides
    assert unknown.required == 1


def test_a_branch_outside_allowed_branches_is_refused_with_the_rule():
    rules = Rules(allowed_branches=("main", "release/*"))
    assert decide(rules, branch="release/2.1").required == 0
    with pytest.raises(policy.RulesRefuse) as caught:
        decide(rules, branch="feature/x")
    assert "accepts artifacts built from main, release/* only" in str(caught.value)
    assert "built from feature/x" in str(caught.value)
    with pytest.raises(policy.RulesRefuse, match="not built by a pipeline run of a branch"):
        decide(rules, branch=None)


def test_an_emergency_skips_approvals_and_the_wait_timer_but_not_the_branch_rule():
    rules = Rules(required_approvals=2, wait_timer=600, allowed_branches=("main",))
    decided = decide(rules, emergency=True)
    assert decided.required == 0 and decided.wait_timer == 0 and decided.emergency
    with pytest.raises(policy.RulesRefuse):
        decide(rules, emergency=True, branch="feature/x")


def test_a_decision_survives_its_stored_form():
    decided = decide(Rules(required_approvals=1, on_timeout=OnTimeout.APPROVE), risk=50)
    assert Decision.load(decided.stored()) == decided
    assert Decision.load(None) == Decision()


WAITS = Decision(required=1, reasons=("production requires 1 approval by a maintainer",))


def test_the_gate_holds_for_approvals_until_they_come():
    gate = Gate(decision=WAITS, requested_at=NOW)
    held = policy.judge(gate, NOW)
    assert held.hold is PauseReason.APPROVAL and "requires 1 approval" in held.message
    assert policy.judge(replace(gate, approved_at=NOW), NOW).hold is None


def test_approvals_time_out_to_a_rejection_or_to_an_approval_as_the_rules_say():
    gate = Gate(decision=replace(WAITS, approval_timeout=3600), requested_at=NOW)
    later = NOW + timedelta(hours=1)
    assert policy.judge(gate, later - timedelta(seconds=1)).hold is PauseReason.APPROVAL
    ended = policy.judge(gate, later)
    assert ended.timed_out and ended.hold is None
    assert ended.message == "rejected: no approval within 1h"
    lenient = replace(gate, decision=replace(gate.decision, on_timeout=OnTimeout.APPROVE))
    assert policy.judge(lenient, later) == policy.Admission(None)


def test_the_wait_timer_runs_from_the_approval():
    gate = Gate(decision=replace(WAITS, wait_timer=300), requested_at=NOW, approved_at=NOW)
    assert policy.judge(gate, NOW + timedelta(seconds=299)).hold is PauseReason.WAIT
    assert policy.judge(gate, NOW + timedelta(seconds=300)).hold is None
    no_approvals = Gate(decision=Decision(wait_timer=60), requested_at=NOW)
    assert policy.judge(no_approvals, NOW + timedelta(seconds=30)).hold is PauseReason.WAIT


FRIDAY_EVENING = Window("0 18 * * 5", timedelta(hours=62), "Europe/Berlin")


def test_a_freeze_window_holds_until_it_ends_and_a_rollback_passes():
    saturday = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    gate = Gate(requested_at=saturday, freezes=(FRIDAY_EVENING,))
    held = policy.judge(gate, saturday)
    assert held.hold is PauseReason.FREEZE
    assert "until 2026-12-07T07:00:00+00:00" in held.message  # Monday 08:00 in Berlin
    assert policy.judge(gate, datetime(2026, 12, 7, 7, 0, tzinfo=UTC)).hold is None
    assert policy.judge(replace(gate, bypass=True), saturday).hold is None


def test_stop_the_line_holds_everything_but_a_rollback_or_an_emergency():
    gate = Gate(decision=Decision(), stopped=True)
    assert policy.judge(gate, NOW).hold is PauseReason.STOP
    assert policy.judge(replace(gate, bypass=True), NOW).hold is None


# -- the planner's gate rule ---------------------------------------------------------------


def gated(gate: Gate, **kw: object) -> object:
    return plan(released=False, gate=gate, **kw)


def test_a_queued_deployment_begins_released_when_its_gate_is_open_and_held_when_not():
    open_gate = decide_begin(Gate(requested_at=NOW))
    assert open_gate.act is Act.BEGIN and open_gate.released
    closed = decide_begin(Gate(decision=WAITS, requested_at=NOW))
    assert closed.act is Act.BEGIN and not closed.released


def decide_begin(gate: Gate):  # type: ignore[no-untyped-def]
    action = plan_next(world(stable(), None, *V1, pending=(2,), next_gate=gate))
    assert action is not None
    return action


def test_a_held_deployment_pauses_with_why_and_starts_nothing():
    waiting = gated(Gate(decision=WAITS, requested_at=NOW))
    action = plan_next(world(stable(), waiting, *V1))
    assert action is not None and action.act is Act.PAUSE
    assert action.reason == PauseReason.APPROVAL.value
    paused = replace(waiting, phase=Phase.PAUSED, pause_reason=PauseReason.APPROVAL)  # type: ignore[type-var]
    assert plan_next(world(stable(), paused, *V1)) is None  # no instance of it starts


def test_an_approved_deployment_is_released_and_then_starts():
    approved = gated(
        Gate(decision=WAITS, requested_at=NOW, approved_at=NOW),
        phase=Phase.PAUSED,
        pause_reason=PauseReason.APPROVAL,
    )
    action = plan_next(world(stable(), approved, *V1))
    assert action is not None and action.act is Act.RELEASE
    released = replace(approved, released=True, phase=Phase.PROGRESSING, pause_reason=None)  # type: ignore[type-var]
    start = plan_next(world(stable(), released, *V1))
    assert start is not None and (start.act, start.digest) == (Act.START, NEW)


def test_an_approval_timeout_ends_the_deployment_aborted():
    waiting = gated(
        Gate(decision=replace(WAITS, approval_timeout=60), requested_at=NOW),
        phase=Phase.PAUSED,
        pause_reason=PauseReason.APPROVAL,
    )
    later = replace(world(stable(), waiting, *V1), now=NOW + timedelta(minutes=2))
    action = plan_next(later)
    assert action is not None and (action.act, action.phase) == (Act.FINISH, Phase.ABORTED)
    assert action.reason == "rejected: no approval within 1m"


def test_a_held_deployment_moves_from_one_hold_to_the_next():
    approved_in_a_freeze = gated(
        Gate(decision=WAITS, requested_at=NOW, approved_at=NOW, freezes=(ALWAYS,)),
        phase=Phase.PAUSED,
        pause_reason=PauseReason.APPROVAL,
    )
    action = plan_next(world(stable(), approved_in_a_freeze, *V1))
    assert action is not None and (action.act, action.reason) == (Act.PAUSE, "freeze")


ALWAYS = Window("* * * * *", timedelta(minutes=2))


def test_stop_the_line_halts_a_progressing_canary_before_its_next_step_then_lets_it_go():
    steps = (Step(StepKind.WEIGHT, weight=10), Step(StepKind.WEIGHT, weight=50))
    canary = (inst("n1", NEW, "b"), inst("n2", NEW, "b"))
    running = plan(steps=steps, gate=Gate(stopped=True))
    action = plan_next(world(stable(), running, *V1, *canary))
    assert action is not None and (action.act, action.reason) == (Act.PAUSE, "stop-the-line")
    held = replace(running, phase=Phase.PAUSED, pause_reason=PauseReason.STOP)
    assert plan_next(world(stable(), held, *V1, *canary)) is None
    lifted = replace(held, gate=Gate(stopped=False))
    action = plan_next(world(stable(), lifted, *V1, *canary))
    assert action is not None and action.act is Act.RELEASE
    rollback = replace(running, gate=Gate(stopped=True, bypass=True))
    action = plan_next(world(stable(), rollback, *V1, *canary))
    assert action is not None and action.act is Act.SPLIT  # a rollback goes on


def test_a_persons_pause_outranks_the_gate():
    paused = gated(
        Gate(requested_at=NOW),
        phase=Phase.PAUSED,
        pause_reason=PauseReason.USER,
        paused_by_user=True,
    )
    assert plan_next(world(stable(), paused, *V1)) is None


def test_conveyor_yml_environments_are_checked_with_where_the_mistake_is():
    from conveyor.pipeline.errors import PipelineInvalid
    from conveyor.pipeline.loader import parse_pipeline

    head = "version: 1\nservice: s\nteam: t\njobs:\n  a: {script: 'true'}\n"
    good = head + "environments:\n  production:\n    required_approvals: 2\n    wait_timer: 5m\n"
    spec = parse_pipeline(good.encode(), "conveyor.yml").spec
    assert spec.environments["production"].declared() == {
        "required_approvals": 2,
        "wait_timer": 300.0,
    }
    rules = policy.merged(spec.environments["production"].declared(), {})
    assert (rules.required_approvals, rules.wait_timer) == (2, 300.0)
    for body, where in (
        ("environments:\n  production:\n    required_approvals: 20\n", "conveyor.yml:8:25"),
        ("environments:\n  production:\n    timezone: Mars/Base\n", "conveyor.yml:8:15"),
        ("environments:\n  production:\n    approver: bob\n", "conveyor.yml:8:5"),
    ):
        with pytest.raises(PipelineInvalid) as caught:
            parse_pipeline((head + body).encode(), "conveyor.yml")
        assert where in str(caught.value), str(caught.value)


def test_an_emergency_strategy_keeps_its_weights_and_drops_its_pauses_and_analyses():
    from conveyor.deploy.strategy import DeployStrategy

    canary = DeployStrategy.load(
        {
            "kind": "canary",
            "steps": [
                {"weight": 20.0},
                {"pause": 5.0},
                {"analysis": "health", "for": 10.0},
                {"weight": 50.0},
            ],
            "background_analysis": "health",
            "bake": {"analysis": "health", "for": 10.0},
        }
    )
    assert canary.without_pauses() == DeployStrategy.load(
        {"kind": "canary", "steps": [{"weight": 20.0}, {"weight": 50.0}]}
    )
    blue_green = DeployStrategy.load(
        {"kind": "blue-green", "pre_promotion": {"analysis": "smoke", "for": 5.0}}
    )
    assert blue_green.without_pauses() == DeployStrategy.load(
        {"kind": "blue-green", "auto_promote": True}
    )
    rolling = DeployStrategy.load({"kind": "rolling", "max_surge": 2})
    assert rolling.without_pauses() == rolling
