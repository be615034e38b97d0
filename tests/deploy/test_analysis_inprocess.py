"""Rollouts judged by their analyses, driven in-process: the real DeploymentManager and
its analyses over the shipped fakes, the router's request log fed by requests sent
through the split and answered by the fake instances (FAKE_FAIL_RATE, FAKE_LATENCY_MS).

Given a canary with an analysis step, when the canary is healthy the step passes and the
rollout goes on; when it fails, the deployment is aborted at once (traffic to 0 first)
and pinned; when nothing can be measured, the deployment pauses with the reason. After
promotion, a failing bake rolls back by itself with a traffic switch.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conveyor.deploy.manager import DeploymentManager
from conveyor.deploy.world import Act
from conveyor.domain.deploy import Control, PauseReason, Phase
from conveyor.domain.errors import Invalid
from conveyor.pipeline.analysis import Provider
from conveyor.storage import analysis, audit, deployments
from tests.deploy.inprocess import ROLLING, World, claimed, serving_v1

HEALTH = {
    "interval": "50ms",
    "min_samples": 40,
    "warmup": "0s",
    "inconclusive_limit": 3,
    "metrics": [
        {"name": "errors", "max": "5%", "compare": "stable", "max_ratio": 1.5},
        {"name": "p99", "quantile": 0.99, "max": "100ms"},
    ],
}


@pytest.fixture(autouse=True)
def stopped_clock(world: World) -> None:
    """Analyses' windows and durations, and the requests the router files, on the
    world's clock, moved by each pass rather than by the machine's speed."""
    world.clock.stop()


CANARY = {
    "kind": "canary",
    "steps": [{"weight": 20.0}, {"analysis": "health", "for": 0.6}, {"weight": 50.0}],
}


async def drive(
    world: World,
    manager: DeploymentManager,
    fence: int,
    until: Phase | PauseReason,
    *,
    number: int,
    requests: int = 25,
    seconds: float = 15.0,
    preview: bool = False,
) -> list[Act]:
    """Passes with traffic between them, until deployment `number` reaches `until` (a
    phase, or a pause for that reason). The world's clock is stopped (`stopped_clock`):
    each pass moves it by PASS_S, so an analysis of 0.6 s sees the same passes and
    requests however slow the machine is; `seconds` (wall time) only bounds the test."""
    taken: list[Act] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        world.tick()
        action = await manager.reconcile(world.env_id, fence)
        if action is not None:
            taken.append(action.act)
            continue
        row = await world.deployment(number)
        if row.phase == until or (row.phase == Phase.PAUSED and row.pause_reason == until):
            world.acts += taken
            return taken
        await world.traffic(requests)
        if preview:
            await world.preview_traffic(requests)
        await asyncio.sleep(0.02)
    raise AssertionError(f"deployment {number} never reached {until}: {taken[-20:]}")


async def runs(world: World, number: int) -> dict[str, Any]:
    row = await world.deployment(number)
    async with world.db.transaction() as session:
        found = await analysis.runs(session, [row.id])
        return {r.key: (r.phase, r.reason, r.evaluations, r.ended_by) for r in found}


async def test_a_healthy_canary_passes_its_analysis_step_and_is_promoted(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy(CANARY, templates={"health": HEALTH})
    acts = await drive(world, manager, fence, Phase.SUCCEEDED, number=2)
    assert acts.count(Act.SPLIT) == 3 and Act.PROMOTE in acts and Act.PAUSE not in acts
    ((key, (phase, reason, evaluations, _)),) = (await runs(world, 2)).items()
    assert (key, phase, reason) == ("step-1", "passed", "every metric passed")
    # It judged every interval and could pass only once its 0.6 s had passed.
    row = await world.deployment(2)
    async with world.db.transaction() as session:
        (run,) = await analysis.runs(session, [row.id])
        stored = await analysis.evaluations(session, run.id, limit=100)
    assert evaluations == len(stored) >= 2
    assert [e.seq for e in stored] == list(range(1, evaluations + 1))
    assert stored[-1].elapsed_s >= 0.6 > stored[0].elapsed_s
    assert all(e.verdict != "fail" for e in stored)


async def test_a_failing_canary_is_aborted_at_once_and_pinned(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy(CANARY, templates={"health": HEALTH}, FAKE_FAIL_RATE="1")
    acts = await drive(world, manager, fence, Phase.ABORTED, number=2)
    # Traffic back to stable first, then the canary drained away.
    first = acts.index(Act.SPLIT, acts.index(Act.SPLIT) + 1)
    assert acts[first : first + 2] == [Act.SPLIT, Act.FINISH] or acts[first] is Act.SPLIT
    env = await world.env()
    assert env.canary_share == 0 and env.revision == 1
    row = await world.deployment(2)
    assert row.message.startswith("analysis health failed: errors: the canary")
    async with world.db.transaction() as session:
        pin = await deployments.pin_of(session, env.id, row.digest)
        chain = await audit.page(session, audit.chain_of(env.team_id))
    assert pin is not None and pin.pinned_by == "conveyor (analysis)"
    pinned = [e for e in chain.entries if e.action == "pin"]
    assert [(e.actor, e.target.endswith("#2"), e.detail["digest"]) for e in pinned] == [
        ("conveyor (analysis)", True, row.digest)
    ]
    assert pinned[0].detail["reason"] == row.message
    assert (await runs(world, 2))["step-1"][0] == "failed"
    # Every request after the abort is served by the stable revision.
    assert set(await world.traffic(200)) == {200}


async def test_no_traffic_is_inconclusive_and_pauses_then_a_person_promotes(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy(CANARY, templates={"health": HEALTH})
    await drive(world, manager, fence, PauseReason.ANALYSIS, number=2, requests=0)
    phase, reason, _, _ = (await runs(world, 2))["step-1"]
    assert phase == "inconclusive"
    assert "too few samples (canary 0, stable 0; need 40 per slot)" in reason
    await world.control(Control.PROMOTE)
    await drive(world, manager, fence, Phase.SUCCEEDED, number=2)
    assert (await world.deployment(2)).requested_by == "test"


async def test_a_failing_background_analysis_aborts_at_any_step(world: World):
    manager, fence = await serving_v1(world)
    strategy = {
        "kind": "canary",
        "steps": [{"weight": 10.0}, {"pause": None}],
        "background_analysis": "health",
    }
    await world.deploy(strategy, templates={"health": HEALTH}, FAKE_LATENCY_MS="500")
    await drive(world, manager, fence, Phase.ABORTED, number=2)
    row = await world.deployment(2)
    assert "p99" in row.message and "above 100.0 ms" in row.message
    assert (await runs(world, 2))["background"][0] == "failed"


async def test_a_failing_bake_rolls_back_to_the_warm_revision_by_itself(world: World):
    manager, fence = await serving_v1(world)
    strategy = {
        "kind": "canary",
        "steps": [{"weight": 100.0}],
        "bake": {"analysis": "health", "for": 5.0},
    }
    # Bad only in the bake: 30 % errors, above the 5 % limit (the canary steps have no
    # analysis of their own here).
    await world.deploy(strategy, templates={"health": HEALTH}, FAKE_FAIL_RATE="0.3")
    acts = await drive(world, manager, fence, Phase.ABORTED, number=2)
    row = await world.deployment(2)
    assert row.message.startswith("bake analysis health failed: errors")
    # The rollback is queued as a traffic switch in the same transaction, and carried
    # out back to back: the old revision was still warm, so nothing starts.
    after = acts[acts.index(Act.PROMOTE) + 1 :]
    assert after[:5] == [Act.ROLLBACK, Act.BEGIN, Act.SPLIT, Act.PROMOTE, Act.FINISH]
    assert Act.START not in after
    back = await world.deployment(3)
    assert back.phase == Phase.SUCCEEDED
    assert (back.kind, back.strategy["kind"], back.rollback_of) == ("rollback", "switch", 2)
    env = await world.env()
    assert env.revision == 3 and env.digest == (await world.deployment(1)).digest
    assert set(await world.traffic(200)) == {200}
    async with world.db.transaction() as session:
        pin = await deployments.pin_of(session, env.id, row.digest)
    assert pin is not None and pin.pinned_by == "conveyor (analysis)"


async def test_a_passing_bake_ends_the_deployment_and_the_old_stack_is_retired(world: World):
    manager, fence = await serving_v1(world)
    strategy = dict(ROLLING, bake={"analysis": "health", "for": 0.5})
    await world.deploy(strategy, templates={"health": HEALTH})
    await drive(world, manager, fence, Phase.SUCCEEDED, number=2, requests=60)
    phase, reason, _, _ = (await runs(world, 2))["bake"]
    assert (phase, reason) == ("passed", "every metric passed")
    assert (await world.deployment(2)).message == "promoted; the bake passed"


async def test_a_template_missing_from_the_artifact_is_refused(world: World):
    await serving_v1(world)
    with pytest.raises(Invalid, match=r"'health'.*does not define"):
        await world.deploy(CANARY)


async def test_pre_deploy_commands_run_once_before_the_first_instance_starts(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy(CANARY, templates={"health": HEALTH}, pre_deploy=("./migrate.sh",))
    acts = await drive(world, manager, fence, Phase.SUCCEEDED, number=2)
    assert acts[:4] == [Act.BEGIN, Act.PRE_DEPLOY, Act.CHECKED, Act.START]
    (task,) = world.target.tasks.values()
    assert task.commands == (("./migrate.sh", 30.0),)
    assert (await world.deployment(2)).pre_deploy == "passed"


async def test_a_failing_pre_deploy_command_aborts_before_any_instance_starts(world: World):
    manager, fence = await serving_v1(world)
    started = len(world.target.starts)
    await world.deploy(
        CANARY, templates={"health": HEALTH}, pre_deploy=("./migrate.sh",), FAKE_TASK_EXIT="3"
    )
    acts = await drive(world, manager, fence, Phase.ABORTED, number=2)
    assert acts == [Act.BEGIN, Act.PRE_DEPLOY, Act.CHECKED]
    assert len(world.target.starts) == started  # no instance of revision 2 ever ran
    row = await world.deployment(2)
    assert (row.pre_deploy, row.message) == (
        "failed",
        "pre_deploy `./migrate.sh` failed (exit 3): ./migrate.sh: failed",
    )
    assert (await world.env()).revision == 1


async def test_a_rollback_does_not_run_pre_deploy_again(world: World):
    await world.deploy(ROLLING, pre_deploy=("./migrate.sh",))
    manager = world.manager()
    fence = await claimed(manager, world)
    await drive(world, manager, fence, Phase.SUCCEEDED, number=1)
    await world.deploy(ROLLING, pre_deploy=("./migrate.sh",))
    await drive(world, manager, fence, Phase.SUCCEEDED, number=2)
    back = await world.rollback()
    acts = await drive(world, manager, fence, Phase.SUCCEEDED, number=back.number)
    assert Act.PRE_DEPLOY not in acts and len(world.target.tasks) == 2


BLUE_GREEN = {"kind": "blue-green", "pre_promotion": {"analysis": "health", "for": 0.5}}
PREVIEW_ONLY = dict(HEALTH, metrics=[{"name": "errors", "max": "5%"}], min_samples=20)


async def test_a_blue_green_preview_is_judged_before_the_switch(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy(BLUE_GREEN, templates={"health": PREVIEW_ONLY})
    acts = await drive(world, manager, fence, PauseReason.PROMOTION, number=2, preview=True)
    assert Act.ADVANCE in acts and Act.SPLIT not in acts  # judged, no traffic moved yet
    assert (await runs(world, 2))["step-0"][:2] == ("passed", "every metric passed")
    await world.control(Control.PROMOTE)
    await drive(world, manager, fence, Phase.SUCCEEDED, number=2)


async def test_a_failing_blue_green_preview_never_takes_traffic(world: World):
    manager, fence = await serving_v1(world)
    await world.deploy(BLUE_GREEN, templates={"health": PREVIEW_ONLY}, FAKE_FAIL_RATE="1")
    acts = await drive(world, manager, fence, Phase.ABORTED, number=2, preview=True)
    assert Act.SPLIT not in acts and Act.PROMOTE not in acts
    row = await world.deployment(2)
    assert row.message.startswith("analysis health failed: errors: the canary's error rate")
    assert (await world.env()).revision == 1


async def test_a_failing_bake_after_a_rolling_deploy_redeploys_the_previous_revision(
    world: World,
):
    manager, fence = await serving_v1(world)
    strategy = dict(ROLLING, bake={"analysis": "health", "for": 5.0})
    await world.deploy(strategy, templates={"health": HEALTH}, FAKE_FAIL_RATE="0.3")
    acts = await drive(world, manager, fence, Phase.ABORTED, number=2, requests=60)
    assert Act.ROLLBACK in acts
    # Nothing of revision 1 was left warm (rolling replaced it in place): the rollback
    # is a rolling redeploy of its artifact.
    back = await world.deployment(3)
    assert (back.kind, back.strategy["kind"]) == ("rollback", "rolling")
    await drive(world, manager, fence, Phase.SUCCEEDED, number=3)
    assert (await world.env()).digest == (await world.deployment(1)).digest
    assert set(await world.traffic(100)) == {200}


class Stuck:
    """A provider that never answers in time, or that raises."""

    def __init__(self, raises: bool = False) -> None:
        self.raises = raises

    async def close(self) -> None:
        return None

    async def measure(self, metric, targets, start, end):  # type: ignore[no-untyped-def]
        if self.raises:
            raise RuntimeError("a provider's bug")
        await asyncio.sleep(5)
        return []


async def test_a_provider_that_hangs_or_breaks_is_no_data_not_a_stuck_driver(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("conveyor.deploy.analyses.MEASURE_TIMEOUT_S", 0.05)
    _, fence = await serving_v1(world)
    manager = DeploymentManager(
        world.db,
        world.blobs,
        world.target,
        world.router,
        owner="replica-a",
        lease_s=30.0,
        providers={Provider.HTTP: Stuck(), Provider.PROMETHEUS: Stuck(raises=True)},
    )
    template = {
        "interval": "50ms",
        "inconclusive_limit": 1,
        "metrics": [
            {"name": "api", "provider": "http", "url": "http://127.0.0.1:9/", "max": 1},
            {"name": "prom", "provider": "prometheus", "query": "up", "max": 1},
            {"name": "rss", "provider": "process", "measure": "rss", "max": "1GiB"},
        ],
    }
    steps = {"kind": "canary", "steps": [{"weight": 10.0}, {"analysis": "slow", "for": 0.2}]}
    await world.deploy(steps, templates={"slow": template})
    began = time.monotonic()
    await drive(world, manager, fence, PauseReason.ANALYSIS, number=2)
    assert time.monotonic() - began < 10
    row = await world.deployment(2)
    async with world.db.transaction() as session:
        (run,) = await analysis.runs(session, [row.id])
    reasons = {j["metric"]: j["reason"] for j in run.latest}
    assert reasons["api"] == "no measurement: the http provider did not answer within 0.05 s"
    assert reasons["prom"] == "no measurement: the prometheus provider failed: RuntimeError"
    assert (
        reasons["rss"] == "no measurement: the process provider is not set up on this coordinator"
    )
