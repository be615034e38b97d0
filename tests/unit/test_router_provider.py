"""The `router` provider over the fake router's request log (MemoryRouter.record): what
it counts as a failure, the preview's requests kept apart, latency and request rate."""

from __future__ import annotations

from conveyor.analysis.providers.base import Instance, Reported, Slot, SlotTarget
from conveyor.analysis.providers.router import RouterProvider, window_quantile
from conveyor.domain.traffic import Served
from conveyor.hosting.memory_router import MemoryRouter
from conveyor.pipeline.analysis import Metric

ERRORS = Metric(name="errors", max="1%")
P99 = Metric(name="p99", quantile=0.99, max="300ms")
RATE = Metric(name="rps", measure="requests", min=1)


def router() -> MemoryRouter:
    fake = MemoryRouter(lambda port: True)
    for ms, status in ((10, 200), (12, 200), (900, 504), (3, 503), (11, 200)):
        fake.record("ekey", "b", status, ms, at=100.5)
    fake.record("ekey", "b", 500, 5, at=100.5, preview=True)
    fake.record("ekey", "a", 200, 8, at=100.5)
    fake.record("ekey", "b", 500, 5, at=99.0)  # before the window
    return fake


TARGETS = [
    SlotTarget(Slot.CANARY, route="ekey", side="b"),
    SlotTarget(Slot.STABLE, route="ekey", side="a"),
    SlotTarget(Slot.STABLE, route=None, side=None),  # no route: not measured
]


async def test_failed_requests_are_5xx_including_the_routers_own():
    canary, stable = await RouterProvider(router()).measure(ERRORS, TARGETS, 100.0, 101.0)
    assert (canary.samples, canary.failures, canary.value) == (5, 2, 0.4)
    assert (stable.samples, stable.failures, stable.value) == (1, 0, 0.0)
    assert canary.detail == "2 of 5 requests failed"


async def test_the_preview_is_measured_apart():
    preview = [SlotTarget(Slot.CANARY, route="ekey", side="b", preview=True)]
    (found,) = await RouterProvider(router()).measure(ERRORS, preview, 100.0, 101.0)
    assert (found.samples, found.failures) == (1, 1)


async def test_latency_carries_every_request_and_the_windows_quantile():
    canary, _ = await RouterProvider(router()).measure(P99, TARGETS, 100.0, 101.0)
    assert sorted(canary.latencies_ms) == [3, 10, 11, 12, 900] and canary.value == 900
    assert window_quantile([1, 2, 3, 4], 0.5) == 2


async def test_request_rate_and_no_requests():
    canary, stable = await RouterProvider(router()).measure(RATE, TARGETS, 100.0, 102.0)
    assert (canary.value, stable.value) == (2.5, 0.5)
    empty, _ = await RouterProvider(router()).measure(ERRORS, TARGETS, 200.0, 201.0)
    assert empty.value is None and empty.detail == "no requests"
    rate, _ = await RouterProvider(router()).measure(RATE, TARGETS, 200.0, 201.0)
    assert rate.value == 0.0  # a rate of nothing is a measurement, not missing data


class Summaries:
    """Requests as router hosts reported them (deploy.routers.HostRouters.served)."""

    async def served(self, route: str, side: str, start: float, end: float) -> list[Served]:
        return [Served(100.5, 200, 10, router=r) for r in ("r1", "r2", "r1")]


async def test_a_measurement_names_the_routers_and_hosts_it_stood_on():
    reported = Reported("i1", "10.0.0.2", None, None, 0.0)
    on_hosts = [SlotTarget(Slot.CANARY, (Instance(7, 80, reported=reported),), route="k", side="a")]
    (found,) = await RouterProvider(Summaries()).measure(ERRORS, on_hosts, 100.0, 101.0)
    assert found.routers == {"r1", "r2"} and found.hosts == {"10.0.0.2"}
    local, _ = await RouterProvider(router()).measure(ERRORS, TARGETS, 100.0, 101.0)
    assert local.routers == frozenset() and local.hosts == frozenset()
