"""The `prometheus` provider against a real Prometheus (Debian's package) that scrapes
the example service's own /metrics: two instances found through the file Conveyor
writes for `file_sd_configs`, one answering half its requests with 500."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx

from conveyor.analysis.providers.base import Instance, Measurement, Slot, SlotTarget
from conveyor.analysis.providers.prometheus import PrometheusProvider, render
from conveyor.deploy import metrics_targets
from conveyor.pipeline.analysis import Metric
from conveyor.storage.environments import RouteRows
from conveyor.storage.tables import Environment
from conveyor.storage.tables import Instance as InstanceRow
from tests.helpers import wait_until_async
from tests.monitoring import example, prometheus

ERROR_RATE = (
    'sum(rate(payments_requests_total{code="500", instance=~"{{ canary }}"}[10s]) or vector(0))'
    ' / sum(rate(payments_requests_total{instance=~"{{ canary }}"}[10s]))'
)


def rows(stable: int, canary: int) -> list[RouteRows]:
    env = Environment(
        id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        name="production",
        stable_slot="a",
    )
    instances = [
        InstanceRow(slot="a", port=stable, revision=1, digest="sha256:one", state="ready"),
        InstanceRow(slot="b", port=canary, revision=2, digest="sha256:two", state="ready"),
        InstanceRow(slot="b", port=1, revision=2, digest="sha256:two", state="starting"),
    ]
    return [RouteRows(env, instances, None)]


def test_the_targets_file_lists_the_instances_in_the_router_with_their_slot(tmp_path: Path):
    path = tmp_path / metrics_targets.METRICS_TARGETS
    metrics_targets.write(path, rows(8001, 8002))
    groups = json.loads(path.read_text())
    assert [g["targets"] for g in groups] == [["127.0.0.1:8001"], ["127.0.0.1:8002"]]
    assert [(g["labels"]["conveyor_role"], g["labels"]["conveyor_revision"]) for g in groups] == [
        ("stable", "1"),
        ("canary", "2"),
    ]


async def test_a_query_judges_the_canary_from_what_prometheus_scraped(tmp_path: Path):
    with (
        example(tmp_path) as stable,
        example(tmp_path, PAYMENTS_FAIL_RATE="0.5") as canary,
    ):
        targets_file = tmp_path / metrics_targets.METRICS_TARGETS
        metrics_targets.write(targets_file, rows(stable, canary))
        config = (
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: conveyor-instances\n"
            f"    file_sd_configs: [{{files: ['{targets_file}'], refresh_interval: 1s}}]\n"
        )
        with prometheus(tmp_path / "prometheus", config) as url:
            traffic = asyncio.create_task(_traffic(stable, canary))
            provider = PrometheusProvider(url)
            try:
                await _judged(provider, stable, canary)
            finally:
                traffic.cancel()
                await provider.close()


async def _traffic(*ports: int) -> None:
    """About 100 requests a second to each instance until cancelled."""
    async with httpx.AsyncClient() as client:
        while True:
            for port in ports:
                for _ in range(10):
                    await client.get(f"http://127.0.0.1:{port}/api/v1/quote?amount=5")
            await asyncio.sleep(0.1)


async def _judged(provider: PrometheusProvider, stable: int, canary: int) -> None:
    targets = [
        SlotTarget(Slot.CANARY, (Instance(0, canary),)),
        SlotTarget(Slot.STABLE, (Instance(0, stable),)),
    ]
    metric = Metric(name="errors", provider="prometheus", query=ERROR_RATE, max=0.1)

    async def canary_rate() -> float | None:
        (found,) = await provider.measure(metric, targets, 0.0, time.time())
        return found.value

    value = await wait_until_async(canary_rate, 60, "a canary error rate")
    assert 0.3 <= value <= 0.7, value
    query = ERROR_RATE.replace("canary", "stable")
    stable_side = Metric(name="errors", provider="prometheus", query=query, max=0.1)

    async def stable_measured() -> Measurement | None:
        (found,) = await provider.measure(stable_side, targets, 0.0, time.time())
        return found if found.value is not None else None

    found = await wait_until_async(stable_measured, 30, "the stable error rate")
    assert found.value == 0.0 and found.samples == 1 and found.slot is Slot.CANARY

    nothing = Metric(name="n", provider="prometheus", query="absent_metric_xyz", max=1)
    (found,) = await provider.measure(nothing, targets, 0.0, time.time())
    assert found.value is None and found.detail == "the query returned no series"
    broken = Metric(name="b", provider="prometheus", query="sum(", max=1)
    (found,) = await provider.measure(broken, targets, 0.0, time.time())
    assert found.value is None and found.detail.startswith("query failed: bad_data")


async def test_slots_expand_to_their_instances_and_a_missing_server_is_no_data():
    targets = [SlotTarget(Slot.CANARY, (Instance(1, 8080), Instance(2, 8081)))]
    assert render('up{instance=~"{{ canary }}"} - on() up{instance=~"{{stable}}"}', targets) == (
        'up{instance=~"127.0.0.1:8080|127.0.0.1:8081"} - on() up{instance=~"^$"}'
    )
    provider = PrometheusProvider(None)
    try:
        metric = Metric(name="q", provider="prometheus", query="up", max=1)
        (found,) = await provider.measure(metric, targets, 0.0, 1.0)
        assert found.value is None and "CONVEYOR_PROMETHEUS_URL" in found.detail
        gone = Metric(
            name="q", provider="prometheus", query="up", max=1, address="http://127.0.0.1:9"
        )
        (found,) = await provider.measure(gone, targets, 0.0, 1.0)
        assert found.value is None
        assert found.detail.startswith("GET http://127.0.0.1:9/api/v1/query")
    finally:
        await provider.close()
