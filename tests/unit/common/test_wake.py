"""The idle step of the background loops stops when cancelled, even when poked in the same tick."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.wake import woken


async def _idle_loop(wake: asyncio.Event, passes: list[bool]) -> None:
    while True:
        passes.append(await woken(wake, 5))


async def test_a_loop_poked_and_cancelled_in_the_same_tick_stops() -> None:
    # asyncio.wait_for(wake.wait(), 5) in place of woken() returns the finished wait here and the loop runs on
    # (Python 3.11): a service's shutdown, or a test run's end, then hangs.
    wake, passes = asyncio.Event(), []
    task = asyncio.create_task(_idle_loop(wake, passes))
    await asyncio.sleep(0.01)
    wake.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert task.cancelled()


async def test_woken_says_whether_it_was_poked_and_clears_the_event() -> None:
    wake = asyncio.Event()
    assert await woken(wake, 0.01) is False
    wake.set()
    assert await woken(wake, 5) is True and not wake.is_set()
    asyncio.get_running_loop().call_later(0.01, wake.set)
    assert await woken(wake, None) is True
