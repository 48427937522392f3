"""A service's shutdown never hangs: a step that does not finish in its grace time is logged and left behind."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from libs.common.runtime import ServiceRuntime
from libs.common.settings import KefuSettings


async def test_a_task_that_ignores_cancellation_does_not_hold_up_the_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    runtime = ServiceRuntime.build("unit", KefuSettings())
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:  # swallowed: the kind of task that once hung a teardown
                continue

    polite = runtime.spawn(asyncio.sleep(3600), name="polite")
    runtime.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="kefu.runtime"):
        await runtime.stop(grace_seconds=0.2)
    assert time.perf_counter() - started < 5
    assert polite.cancelled()
    assert "task stubborn did not stop within 0.2 s" in caplog.text
    release.set()
