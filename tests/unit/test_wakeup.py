"""Wake-ups of long-polling runner requests within one process."""

from __future__ import annotations

import asyncio

from conveyor.scheduler.service import Wakeup


async def _waiting(wakeup: Wakeup, kinds: list[str]) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(wakeup.wait(5.0, kind)) for kind in kinds]
    await asyncio.sleep(0)  # every waiter is queued
    return tasks


async def _woken(tasks: list[asyncio.Task[None]]) -> int:
    await asyncio.sleep(0.01)
    done = sum(1 for t in tasks if t.done())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return done


async def test_one_waiter_per_job_when_every_runner_is_of_one_kind():
    wakeup = Wakeup()
    tasks = await _waiting(wakeup, ["linux"] * 5)
    wakeup.notify(2)
    assert await _woken(tasks) == 2
    assert wakeup.generation == 1


async def test_twice_as_many_when_kinds_differ():
    wakeup = Wakeup()
    tasks = await _waiting(wakeup, ["linux", "gpu", "linux", "gpu", "linux"])
    wakeup.notify(1)
    assert await _woken(tasks) == 2


async def test_a_timed_out_waiter_leaves_the_queue():
    wakeup = Wakeup()
    await wakeup.wait(0.01, "linux")
    tasks = await _waiting(wakeup, ["linux"])
    wakeup.notify(1)
    assert await _woken(tasks) == 1
