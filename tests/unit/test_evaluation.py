"""An analysis run's evaluations, with no I/O: measurements folded into tallies per
metric and slot, judged each interval; a new traffic share starts the tallies again;
the canary's warm-up latency is left out, its errors never are."""

from __future__ import annotations

from dataclasses import replace

from conveyor.analysis.evaluation import (
    LATENCIES_KEPT,
    Evaluation,
    judged,
    judgement_json,
    measurement_json,
    worst,
)
from conveyor.analysis.judge import Verdict
from conveyor.analysis.providers.base import Measurement, Slot
from conveyor.pipeline.analysis import Template

TEMPLATE = Template.model_validate(
    {
        "min_samples": 100,
        "warmup": "5s",
        "metrics": [
            {"name": "errors", "max": "5%", "compare": "stable", "max_ratio": 1.5},
            {"name": "p99", "quantile": 0.99, "compare": "stable", "max_ratio": 1.5},
            {"name": "rss", "provider": "process", "measure": "rss", "max": "100MiB"},
        ],
    }
)


def errors(slot: Slot, requests: int, failed: int, end: float) -> Measurement:
    return Measurement(
        "errors",
        slot,
        failed / requests if requests else None,
        requests,
        end - 1,
        end,
        failures=failed,
    )


def latency(slot: Slot, times: list[float], end: float) -> Measurement:
    return Measurement("p99", slot, max(times), len(times), end - 1, end, latencies_ms=tuple(times))


def rss(value: float | None, end: float) -> Measurement:
    return Measurement(
        "rss", Slot.CANARY, value, 1 if value else 0, end - 1, end, "gone" if value is None else ""
    )


def second(run: Evaluation, t: float, c_failed: int = 0, c_ms: float = 10.0, share: float = 0.1):
    return run.add(
        [
            errors(Slot.CANARY, 20, c_failed, t),
            errors(Slot.STABLE, 180, 0, t),
            latency(Slot.CANARY, [c_ms] * 20, t),
            latency(Slot.STABLE, [10.0] * 180, t),
            rss(50 * 2**20, t),
        ],
        share,
    )


def by_name(judgements):  # type: ignore[no-untyped-def]
    return {j.metric: j for j in judgements}


def test_counts_add_up_across_intervals_and_a_healthy_canary_passes():
    run = Evaluation(TEMPLATE, compare=True)
    first = by_name(second(run, 1.0))
    assert first["errors"].verdict is Verdict.INCONCLUSIVE  # 20 of the 100 samples needed
    assert first["p99"].verdict is Verdict.INCONCLUSIVE  # still warming up: not counted
    for t in range(2, 12):
        found = by_name(second(run, float(t)))
    assert found["errors"].verdict is Verdict.PASS
    assert found["errors"].samples == {"canary": 220, "stable": 1980}
    assert found["p99"].verdict is Verdict.PASS
    # The first window ended at 1 s: windows ending by 6 s are the warm-up, 7 to 11 count.
    assert found["p99"].samples["canary"] == 20 * 5
    assert found["rss"].verdict is Verdict.PASS
    assert worst(list(found.values())) is Verdict.PASS


def test_every_canary_request_failing_fails_within_the_first_second():
    run = Evaluation(TEMPLATE, compare=True)
    found = by_name(second(run, 1.0, c_failed=20))
    assert found["errors"].verdict is Verdict.FAIL
    assert judgement_json(found["errors"])["verdict"] == "fail"


def test_latency_is_judged_after_the_warmup_and_a_slow_canary_fails():
    run = Evaluation(TEMPLATE, compare=True)
    for t in range(1, 6):  # the first five seconds are the warm-up
        assert by_name(second(run, float(t), c_ms=500.0))["p99"].verdict is Verdict.INCONCLUSIVE
    found = by_name(second(run, 7.0, c_ms=500.0))
    assert found["p99"].verdict is Verdict.FAIL
    assert found["errors"].verdict is not Verdict.FAIL


def test_a_new_traffic_share_starts_the_tallies_again():
    run = Evaluation(TEMPLATE, compare=True)
    for t in range(1, 6):
        second(run, float(t), share=0.1)
    assert run.tallies[("errors", Slot.CANARY)].requests == 100
    second(run, 6.0, share=0.5)
    assert run.tallies[("errors", Slot.CANARY)].requests == 20 and run.resets == 1


def test_no_measurement_of_a_gauge_is_inconclusive_with_the_reason():
    run = Evaluation(TEMPLATE, compare=True)
    found = by_name(run.add([rss(None, 1.0)], 0.1))
    assert found["rss"].verdict is Verdict.INCONCLUSIVE
    assert found["rss"].reason == "no measurement: gone"
    assert by_name(run.add([rss(200 * 2**20, 2.0)], 0.1))["rss"].verdict is Verdict.FAIL


def test_without_a_stable_slot_only_absolute_limits_are_judged():
    # After promotion (bake) nothing serves beside the new revision: `errors` keeps its
    # 5 % limit, `p99` has only a relative one and is not judged.
    assert [m.name for m in judged(TEMPLATE, compare=False)] == ["errors", "rss"]
    run = Evaluation(TEMPLATE, compare=False)
    found = by_name(run.add([errors(Slot.CANARY, 200, 0, 1.0)], None))
    assert set(found) == {"errors", "rss"}
    assert found["errors"].verdict is Verdict.PASS and found["errors"].samples == {"canary": 200}


def test_each_slot_keeps_its_newest_latencies_only():
    run = Evaluation(TEMPLATE, compare=True)
    for t in range(1, 4):
        run.add([latency(Slot.CANARY, [float(t)] * 60_000, float(t * 10))], 0.1)
    kept = run.tallies[("p99", Slot.CANARY)].latencies
    assert len(kept) == LATENCIES_KEPT and kept[0] == 2.0 and kept[-1] == 3.0


def test_a_judgement_counts_the_hosts_and_routers_its_measurements_stood_on():
    run = Evaluation(TEMPLATE, compare=True)
    on = [
        replace(
            errors(Slot.CANARY, 20, 0, 1.0), hosts=frozenset({"h1"}), routers=frozenset({"r1"})
        ),
        replace(errors(Slot.STABLE, 180, 0, 1.0), hosts=frozenset({"h2", "h3"})),
        replace(rss(50 * 2**20, 1.0), hosts=frozenset({"h1"})),
    ]
    found = by_name(run.add(on, 0.1))
    assert (found["errors"].hosts, found["errors"].routers) == (3, 1)
    assert (found["rss"].hosts, found["rss"].routers) == (1, 0)
    assert (found["p99"].hosts, found["p99"].routers) == (0, 0)  # this machine's
    later = [replace(errors(Slot.CANARY, 20, 0, 2.0), routers=frozenset({"r2"}))]
    assert by_name(run.add(later, 0.1))["errors"].routers == 2  # over the whole run
    assert judgement_json(found["errors"])["hosts"] == 3
    assert measurement_json(on[0])["routers"] == ["r1"]
