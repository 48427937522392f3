"""The feedback batcher's ``feedback.flagged`` consumer on an in-memory broker and SQLite
(tests/unit/handler_harness.py).

The handler is only a nudge: the release threshold is counted in the flags table, so a redelivered event wakes the
batcher again and changes nothing else. That is what is checked; releases themselves: tests/integration/feedback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker

from libs.common.events import FeedbackFlagged, Topic
from libs.common.tables import OutboxMessage, ProcessedEvent
from services.feedback.batcher import ReleaseBatcher, register
from services.feedback.settings import Settings
from tests.unit.handler_harness import (
    count,
    dead_letters,
    deliver_twice,
    invalid_payload,
    publish_raw,
    sqlite_runtime,
    unit_settings,
)

TOPIC = Topic.FEEDBACK_FLAGGED.value


def _flagged() -> FeedbackFlagged:
    return FeedbackFlagged(
        flag_id="flag-1", answer_id="answer-1", reason="wrong", correction="七天内退款。", agent="agent-1"
    )


@pytest.fixture
async def feedback(tmp_path: Path):
    settings = unit_settings(Settings, tmp_path / "home")
    rt = await sqlite_runtime("feedback", settings)
    batcher = ReleaseBatcher(rt, settings)
    register(rt, batcher)
    letters = dead_letters(rt.broker, TOPIC)
    try:
        async with TestKafkaBroker(rt.broker):
            yield rt, batcher, letters
    finally:
        await rt.engine.dispose()


async def test_a_redelivered_flag_only_wakes_the_batcher(feedback) -> None:
    rt, batcher, letters = feedback
    await deliver_twice(rt.broker, _flagged())
    assert batcher.wake.is_set() and letters == []
    # Nothing recorded or staged per delivery: the database, not the event, decides a release.
    assert await count(rt, ProcessedEvent) == 0 and await count(rt, OutboxMessage) == 0


@pytest.mark.parametrize(
    "body",
    [b"\xc3\x28", "flagged!", invalid_payload(_flagged(), agent=None), invalid_payload(_flagged(), flag_id=7)],
    ids=["bad-utf8", "text", "no-agent", "numeric-flag-id"],
)
async def test_a_poison_flag_is_dead_lettered_and_wakes_nothing(feedback, body: bytes | str) -> None:
    rt, batcher, letters = feedback
    await publish_raw(rt.broker, TOPIC, body)
    [letter] = letters
    assert letter["topic"] == TOPIC and letter["consumer"] == "feedback"
    assert letter["error"].split(":")[0] in {"JSONDecodeError", "UnicodeDecodeError", "ValidationError"}
    assert not batcher.wake.is_set()
