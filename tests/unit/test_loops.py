"""The coordinator's background loops, supervised by name: a loop that fails starts
again after a back-off (counted per name), one that ends by itself stays ended, and
stopping cancels them all."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.coordinator.loops import Loops


async def test_a_failing_loop_starts_again_and_the_others_go_on() -> None:
    tries = {"flaky": 0, "steady": 0, "done": 0}
    steady_running = asyncio.Event()
    recovered = asyncio.Event()

    async def flaky() -> None:
        tries["flaky"] += 1
        if tries["flaky"] <= 2:
            raise RuntimeError("a bug in one pass")
        recovered.set()
        await asyncio.Event().wait()  # runs until cancelled

    async def steady() -> None:
        tries["steady"] += 1
        steady_running.set()
        await asyncio.Event().wait()

    async def done() -> None:
        tries["done"] += 1

    loops = Loops({"flaky": flaky, "steady": steady, "done": done}, backoff=(0.01, 0.02))
    loops.start()
    async with asyncio.timeout(5):
        await recovered.wait()
        await steady_running.wait()
    assert loops.restarts == {"flaky": 2, "steady": 0, "done": 0}
    assert tries == {"flaky": 3, "steady": 1, "done": 1}
    await loops.stop()
    assert all(task.done() for task in loops.tasks)
    assert [t.get_name() for t in loops.tasks] == ["flaky", "steady", "done"]


async def test_the_back_off_doubles_up_to_its_longest(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    failures = 0
    finished = asyncio.Event()

    async def broken() -> None:
        nonlocal failures
        failures += 1
        if failures > 5:
            finished.set()
            await asyncio.Event().wait()
        raise RuntimeError("still broken")

    loops = Loops({"broken": broken}, backoff=(1.0, 4.0))
    monkeypatch.setattr("conveyor.coordinator.loops.asyncio.sleep", recording_sleep)
    loops.start()
    try:
        async with asyncio.timeout(5):
            await finished.wait()
    finally:
        await loops.stop()
    assert waits[:5] == [1.0, 2.0, 4.0, 4.0, 4.0]
