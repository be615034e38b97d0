"""The `process` provider against real processes: one that holds 64 MiB and spins, one
that sleeps; a process that is gone is no data, not an error. Instances on the fleet's
hosts are measured from their agents' reports (a stale report is no data)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from conveyor.analysis.providers.base import Instance, Reported, Slot, SlotTarget
from conveyor.analysis.providers.process import STALE_S, ProcessProvider
from conveyor.pipeline.analysis import Metric

HOG = (
    "import sys, time\n"
    "block = bytearray(64 * 1024 * 1024)\n"
    "for i in range(0, len(block), 4096): block[i] = 1\n"
    "print('ready', flush=True)\n"
    "end = time.monotonic() + 60\n"
    "while time.monotonic() < end: pass\n"
)
IDLE = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"


@pytest.fixture
def processes() -> Iterator[tuple[subprocess.Popen[str], subprocess.Popen[str]]]:
    hog = subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", IDLE], stdout=subprocess.PIPE, text=True)
    try:
        for proc in (hog, idle):
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield hog, idle
    finally:
        for proc in (hog, idle):
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def targets(hog: subprocess.Popen[str], idle: subprocess.Popen[str]) -> list[SlotTarget]:
    return [
        SlotTarget(Slot.CANARY, (Instance(hog.pid, 0),)),
        SlotTarget(Slot.STABLE, (Instance(idle.pid, 0),)),
    ]


async def test_rss_is_the_largest_instance_in_bytes(processes):
    hog, idle = processes
    rss = Metric(name="rss", provider="process", measure="rss", max="512MiB")
    canary, stable = await ProcessProvider().measure(rss, targets(hog, idle), 0.0, 1.0)
    assert (canary.slot, stable.slot) == (Slot.CANARY, Slot.STABLE)
    assert canary.value is not None and canary.value > 64 * 2**20
    assert stable.value is not None and stable.value < 40 * 2**20
    assert canary.samples == 1 and canary.parts == {str(hog.pid): canary.value}


async def test_cpu_is_a_share_of_one_core_over_the_window(processes):
    hog, idle = processes
    cpu = Metric(name="cpu", provider="process", measure="cpu", max="80%")
    provider = ProcessProvider()
    await provider.measure(cpu, targets(hog, idle), 0.0, 0.0)  # starts the window
    time.sleep(0.5)
    canary, stable = await provider.measure(cpu, targets(hog, idle), 0.0, 0.5)
    # A busy loop uses most of a core (the test suite shares the machine's two).
    assert canary.value is not None and canary.value > 0.2
    assert stable.value is not None and stable.value < 0.1


async def test_a_process_that_is_gone_is_no_data(processes):
    hog, idle = processes
    hog.kill()
    hog.wait()
    rss = Metric(name="rss", provider="process", measure="rss", max="512MiB")
    canary, _ = await ProcessProvider().measure(rss, targets(hog, idle), 0.0, 1.0)
    assert canary.value is None and canary.samples == 0
    assert canary.detail == f"gone: {hog.pid}"


async def test_a_slot_with_no_instance_is_no_data():
    rss = Metric(name="rss", provider="process", measure="rss", max="512MiB")
    (empty,) = await ProcessProvider().measure(rss, [SlotTarget(Slot.CANARY)], 0.0, 1.0)
    assert (empty.value, empty.detail) == (None, "no instance")


async def test_instances_on_hosts_are_measured_from_their_agents_reports():
    now = [1000.0]
    provider = ProcessProvider(clock=lambda: now[0])
    rss = Metric(name="rss", provider="process", measure="rss", max="512MiB")
    cpu = Metric(name="cpu", provider="process", measure="cpu", max="80%")

    def on_host(cpu_s: float, at: float, mib: int = 300, pid: int = 4242) -> SlotTarget:
        seen = Reported("i-1", "10.0.0.7", float(mib << 20), cpu_s, at)
        # The pid is the host's: never looked up on this machine (4242 may be anything here).
        return SlotTarget(Slot.CANARY, (Instance(pid, 20000, reported=seen),))

    (first,) = await provider.measure(rss, [on_host(10.0, 999.0)], 0.0, 1.0)
    assert (first.value, first.samples, first.parts) == (
        300.0 * 2**20,
        1,
        {"10.0.0.7:4242": first.value},
    )
    assert first.hosts == {"10.0.0.7"}  # the verdict says how many hosts it saw
    (opening,) = await provider.measure(cpu, [on_host(10.0, 999.0)], 0.0, 1.0)
    assert opening.value == 0.0  # one report: no window yet
    (same,) = await provider.measure(cpu, [on_host(10.0, 999.0)], 1.0, 2.0)
    assert same.value == 0.0
    now[0] = 1005.0
    (spinning,) = await provider.measure(cpu, [on_host(14.0, 1004.0)], 2.0, 3.0)
    assert spinning.value == pytest.approx(0.8)  # 4 s of CPU over 5 s between reports
    (held,) = await provider.measure(cpu, [on_host(14.0, 1004.0)], 3.0, 4.0)
    assert held.value == pytest.approx(0.8)  # no newer report: the same window
    now[0] = 1004.0 + STALE_S + 1
    (stale,) = await provider.measure(rss, [on_host(14.0, 1004.0)], 4.0, 5.0)
    assert stale.value is None and stale.detail == "gone: 10.0.0.7:4242"
    assert stale.hosts == frozenset()  # a stale report stands for nothing
    gone = SlotTarget(
        Slot.CANARY, (Instance(0, 20000, reported=Reported("i-2", "h", None, None, 0.0)),)
    )
    (nothing,) = await provider.measure(rss, [gone], 5.0, 6.0)
    assert nothing.value is None and nothing.samples == 0
