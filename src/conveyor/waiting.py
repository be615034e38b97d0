"""Waiting for an event with a time limit, in the one way that keeps cancellation.

`asyncio.wait_for(event.wait(), t)` on Python 3.11 can turn a cancel that lands as its
timeout fires, or as the event is set, into a return or a TimeoutError: the task goes on
as if nothing had asked it to stop (decision 0025: drivers that did kept `conveyor serve`
from stopping). `asyncio.timeout` tells its own cancel from another one.
"""

from __future__ import annotations

import asyncio
import contextlib


async def event_or_timeout(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
