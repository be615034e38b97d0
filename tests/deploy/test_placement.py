"""Placement: a pure function, tested with no I/O."""

from __future__ import annotations

import pytest

from conveyor.deploy.placement import Candidate, place
from conveyor.domain.hosts import HostState
from conveyor.pipeline.deploy import Placement

ZONES = [
    Candidate("h1", {"zone": "a", "role": "web"}),
    Candidate("h2", {"zone": "a", "role": "web"}),
    Candidate("h3", {"zone": "b", "role": "web"}),
]


def test_instances_spread_over_hosts_first_then_double_up():
    placed = place(Placement(), ZONES, peers=[], count=4)
    assert placed.complete and placed.reason is None
    assert placed.hosts == ("h1", "h2", "h3", "h1")


def test_spread_by_zone_balances_zones_before_hosts():
    placed = place(Placement(spread=["zone"]), ZONES, peers=[], count=2)
    zone = {host.name: host.labels["zone"] for host in ZONES}
    assert sorted(zone[h] for h in placed.hosts) == ["a", "b"]
    # With one instance already in zone a, the next goes to zone b, then to zone a's
    # other host (zones even, then hosts even within them).
    placed = place(Placement(spread=["zone", "host"]), ZONES, peers=["h1"], count=2)
    assert placed.hosts == ("h3", "h2")


def test_peers_count_against_their_hosts_and_the_least_loaded_host_wins_a_tie():
    busy = [
        Candidate("h1", used_slots=5),
        Candidate("h2", used_slots=1),
        Candidate("h3", used_slots=3),
    ]
    assert place(Placement(), busy, peers=[], count=1).hosts == ("h2",)
    assert place(Placement(), busy, peers=["h2"], count=1).hosts == ("h3",)


def test_labels_must_all_match():
    hosts = [*ZONES, Candidate("h4", {"zone": "b", "role": "db"})]
    placed = place(Placement(labels={"role": "web", "zone": "b"}), hosts, peers=[], count=2)
    assert placed.hosts == ("h3", "h3")


def test_max_per_host_and_capacity_leave_a_shortfall_with_the_reason():
    hosts = [
        Candidate("h1", slots=2, used_slots=2),
        Candidate("h2", memory=2**30, used_memory=2**30 - 2**28),
        Candidate("h3"),
        Candidate("h4", state=HostState.LOST),
        Candidate("h5", state=HostState.DRAINING),
        Candidate("h6", {"zone": "b"}),
    ]
    rules = Placement(max_per_host=1, labels={})
    placed = place(rules, hosts, peers=["h3"], count=3, memory=2**29)
    assert not placed.complete
    assert placed.hosts == ("h6",)
    assert placed.reason == (
        "placed 1 of 3 instances; of 6 hosts: 2 at max_per_host 1, 1 draining, "
        "1 full (2 slots), 1 lost, 1 out of memory (256MiB free, 512MiB needed)"
    )


def test_an_impossible_placement_says_what_every_host_lacks():
    placed = place(Placement(labels={"zone": "c"}), ZONES, peers=[], count=2)
    assert placed.hosts == () and not placed.complete
    assert placed.reason == "placed none of 2 instances; of 3 hosts: 3 without zone=c"
    assert (
        place(Placement(), [], peers=[], count=1).reason == "placed none of 1 instances; no hosts"
    )


def test_memory_is_counted_as_instances_are_placed():
    hosts = [Candidate("h1", memory=2**30), Candidate("h2", memory=2**29)]
    placed = place(Placement(), hosts, peers=[], count=4, memory=2**29)
    assert placed.hosts == ("h1", "h2", "h1")
    assert placed.reason == (
        "placed 3 of 4 instances; of 2 hosts: 2 out of memory (0MiB free, 512MiB needed)"
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"spread": ["zone", "zone"]}, "spread names zone more than once"),
        ({"max_per_host": 0}, "greater than or equal to 1"),
        ({"labels": {"bad key!": "x"}}, "should match pattern"),
        ({"spread": "zone"}, "valid list"),
    ],
)
def test_placement_rules_are_validated(body: dict[str, object], problem: str):
    with pytest.raises(ValueError, match=problem):
        Placement.model_validate(body)


def test_an_instance_on_a_host_is_launched_with_what_its_agent_counts_in_its_output():
    from conveyor.deploy.instance_hosts import launch_of, log_patterns
    from conveyor.pipeline.deploy import Runtime

    templates = {
        "health": {
            "metrics": [
                {"name": "errors", "provider": "logs", "pattern": "ERROR|Traceback", "max": 0},
                {"name": "p99", "quantile": 0.99, "max": 0.5},
            ]
        },
        "bake": {"metrics": [{"name": "e", "provider": "logs", "pattern": "ERROR|Traceback"}]},
        "other": {"metrics": [{"name": "oom", "provider": "logs", "pattern": "Killed"}]},
    }
    assert log_patterns(templates) == ["ERROR|Traceback", "Killed"]
    runtime = Runtime(command="serve --port $PORT", env={"A": "1"}, memory=1024)
    launched = launch_of(runtime, log_patterns(templates))
    assert launched["log_patterns"] == ["ERROR|Traceback", "Killed"]
    assert (launched["command"], launched["env"], launched["memory"]) == (
        "serve --port $PORT",
        {"A": "1"},
        1024,
    )
    assert launch_of(runtime)["log_patterns"] == []
