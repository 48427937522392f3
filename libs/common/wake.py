"""Sleep until poked or a period passes: the idle step of the event-woken background loops (outbox relay, job
runners, the feedback release batcher).

Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11 it swallows a cancellation that arrives as the event
is set (it returns the finished wait instead of raising), so a ``while True`` loop around it never stops. A test
run hung at its end on an outbox relay that had been poked and cancelled in the same tick. ``asyncio.timeout``
raises the cancellation.
"""

from __future__ import annotations

import asyncio


async def woken(event: asyncio.Event, seconds: float | None) -> bool:
    """Whether ``event`` was set within ``seconds`` (None: wait without limit); cleared either way."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    finally:
        event.clear()
    return True
