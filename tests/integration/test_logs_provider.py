"""The `logs` provider against real processes writing their output to files, as the
local target keeps it: each call counts the new lines that match, per second."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.analysis.providers.base import Instance, Reported, Slot, SlotTarget
from conveyor.analysis.providers.logs import LogsProvider
from conveyor.pipeline.analysis import Metric
from tests.helpers import wait_until

WRITER = (
    "import sys, time\n"
    "word = sys.argv[1]\n"
    "for i in range(20):\n"
    "    print(f'{word} request {i}', flush=True)\n"
    "print('done', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    logs = (tmp_path / "bad.log", tmp_path / "good.log")
    procs = []
    for path, word in zip(logs, ("ERROR", "ok"), strict=True):
        with path.open("wb") as out:
            procs.append(subprocess.Popen([sys.executable, "-c", WRITER, word], stdout=out))
    try:
        for path in logs:
            wait_until(lambda p=path: "done" in p.read_text(), 10, f"{path.name} written")
        yield logs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def test_matching_lines_are_counted_once_per_second_of_the_window(writers):
    bad, good = writers
    targets = [
        SlotTarget(Slot.CANARY, (Instance(1, 1, str(bad)),)),
        SlotTarget(Slot.STABLE, (Instance(2, 2, str(good)),)),
    ]
    metric = Metric(name="errors", provider="logs", pattern="ERROR|Traceback", max=5)
    provider = LogsProvider()
    canary, stable = await provider.measure(metric, targets, 0.0, 2.0)
    assert (canary.value, canary.samples) == (10.0, 21)  # 20 matches in 2 s, 21 lines
    assert (stable.value, stable.samples) == (0.0, 21)
    assert canary.detail == "20 of 21 new lines match 'ERROR|Traceback'"
    # Nothing new since: nothing counted twice.
    canary, _ = await provider.measure(metric, targets, 2.0, 3.0)
    assert (canary.value, canary.samples) == (0.0, 0)
    with bad.open("a") as more:
        more.write("Traceback (most recent call last):\npartial line with no end")
    canary, _ = await provider.measure(metric, targets, 3.0, 4.0)
    assert (canary.value, canary.samples) == (1.0, 1)  # the unfinished line waits
    await provider.close()


async def test_no_file_is_no_data(tmp_path: Path):
    metric = Metric(name="errors", provider="logs", pattern="ERROR", max=5)
    targets = [
        SlotTarget(Slot.CANARY, (Instance(1, 1, None),)),
        SlotTarget(Slot.STABLE, (Instance(2, 2, str(tmp_path / "gone.log")),)),
    ]
    canary, stable = await LogsProvider().measure(metric, targets, 0.0, time.time())
    assert canary.value is None and canary.detail == "no log to read"
    assert stable.value == 0.0 and stable.samples == 0


async def test_instances_on_hosts_are_counted_from_what_their_agents_reported():
    def on_host(lines: int, matches: dict[str, int]) -> SlotTarget:
        seen = Reported("i1", "10.0.0.11", None, None, 0.0, lines, matches)
        return SlotTarget(Slot.CANARY, (Instance(7, 8, reported=seen),))

    metric = Metric(name="errors", provider="logs", pattern="ERROR", max=5)
    provider = LogsProvider()
    (first,) = await provider.measure(metric, [on_host(30, {"ERROR": 4})], 0.0, 2.0)
    assert (first.value, first.samples) == (2.0, 30)  # its whole output so far
    assert first.hosts == {"10.0.0.11"}
    (then,) = await provider.measure(metric, [on_host(40, {"ERROR": 5})], 2.0, 3.0)
    assert (then.value, then.samples) == (1.0, 10)  # what the counts gained since
    # An instance started before a template asked for the pattern has no count of it.
    (none,) = await provider.measure(metric, [on_host(50, {})], 3.0, 4.0)
    assert (none.value, none.samples) == (0.0, 0)
