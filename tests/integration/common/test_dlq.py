"""Retries before dead letters, and ``kefu dlq list|replay``, against the real broker (Tansu) and PostgreSQL.

Handlers here are written like the services' (``claim_event`` in the handler's transaction), on a topic of their
own so no other suite's consumers see these events.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from kefu.dlq import list_dead_letters
from kefu.tansu import create_topics
from libs.common.broker import consumer_options, make_broker, publish_json
from libs.common.events import DatasetReady
from libs.common.outbox import claim_event
from libs.common.settings import KefuSettings


async def fresh_topic(bootstrap: str) -> str:
    topic = f"test.retry.{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [topic, f"{topic}.dlq"], partitions=1)
    return topic


async def until(check: Callable[[], Any], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def publish(settings: KefuSettings, topic: str, event: DatasetReady) -> None:
    broker = make_broker(settings, service="test-producer")
    await broker.start()
    try:
        await publish_json(broker, topic=topic, key=event.key, payload=event.model_dump_json(), event_id=event.event_id)
    finally:
        await broker.stop()


async def consume(settings: KefuSettings, topic: str, group: str, handler: Callable[[dict], Awaitable[None]]) -> Any:
    """A started broker whose one subscriber (group ``group``) calls ``handler`` with the decoded body."""
    broker = make_broker(settings, service=group)

    @broker.subscriber(topic, **consumer_options(settings, group=group))
    async def on_event(body: dict) -> None:
        await handler(body)

    await broker.start()
    return broker


def kefu_cli(settings: KefuSettings, *args: str) -> str:
    env = {**os.environ, "KEFU_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "KEFU_HOME": str(settings.home)}
    proc = subprocess.run(
        [sys.executable, "-m", "kefu", "dlq", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


async def test_a_transient_failure_is_retried_not_dead_lettered(settings: KefuSettings, db_sessions) -> None:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(update={"consumer_retry_backoff_seconds": 0.1})
    topic = await fresh_topic(settings.kafka_bootstrap)
    group = f"retry-{uuid.uuid4().hex[:6]}"
    calls: list[float] = []
    handled: list[str] = []

    async def flaky(body: dict) -> None:
        event = DatasetReady.model_validate(body)
        calls.append(time.monotonic())
        async with db_sessions() as session, session.begin():
            if not await claim_event(session, group, event.event_id):
                return
            if len(calls) <= 2:  # rolled back with the claim: the retry claims it again
                raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
            handled.append(event.event_id)

    broker = await consume(settings, topic, group, flaky)
    try:
        event = DatasetReady(dataset_id="ds-flaky", uri="file:///d", source="t")
        await publish(settings, topic, event)
        await until(lambda: handled)
        await asyncio.sleep(1.0)  # a late dead letter or redelivery would show up by now
    finally:
        await broker.stop()
    assert handled == [event.event_id] and len(calls) == 3
    waits = [b - a for a, b in itertools.pairwise(calls)]
    assert 0.08 <= waits[0] <= 0.5 and 0.16 <= waits[1] <= 0.7, waits  # 0.1 s, then 0.2 s (±20 %)
    assert await list_dead_letters(settings.kafka_bootstrap, topic) == []


class StrictV1(BaseModel):
    """The buggy first handler's contract: it insists on a field the producer never sends."""

    dataset_id: str
    region: str


async def test_poison_is_dead_lettered_at_once_and_replayed_once_after_the_fix(
    settings: KefuSettings,
    db_sessions,  # type: ignore[no-untyped-def]
) -> None:
    # Slow backoff: if poison were retried, the dead letter would take 20 s+ and the handler would run again.
    settings = settings.model_copy(update={"consumer_retry_backoff_seconds": 10.0})
    topic = await fresh_topic(settings.kafka_bootstrap)
    group = f"fix-{uuid.uuid4().hex[:6]}"
    v1_calls: list[str] = []

    async def buggy(body: dict) -> None:
        v1_calls.append(body["event_id"])
        StrictV1.model_validate(body)  # pydantic ValidationError: poison

    event = DatasetReady(dataset_id="ds-poison", uri="file:///d", source="t")
    broker = await consume(settings, topic, group, buggy)
    try:
        await publish(settings, topic, event)
        started = time.monotonic()
        letters: list = []

        async def dead() -> None:
            while not letters:
                letters.extend(await list_dead_letters(settings.kafka_bootstrap, topic))

        await asyncio.wait_for(dead(), timeout=30)
        to_dlq = time.monotonic() - started
        await asyncio.sleep(0.5)
    finally:
        await broker.stop()
    assert v1_calls == [event.event_id] and to_dlq < 10, to_dlq  # one attempt, no backoff
    [entry] = letters
    assert entry.letter.consumer == group and entry.letter.key == event.key and not entry.replayed
    assert entry.letter.error.startswith("ValidationError") and "region" in entry.letter.error

    listed = kefu_cli(settings, "list", topic)
    assert "pending" in listed and "ValidationError" in listed and event.event_id in listed
    assert "1 dead letter(s)" in listed and "1 not replayed" in listed

    handled: list[str] = []

    async def fixed(body: dict) -> None:
        fixed_event = DatasetReady.model_validate(body)
        async with db_sessions() as session, session.begin():
            if await claim_event(session, group, fixed_event.event_id):
                handled.append(fixed_event.event_id)

    broker = await consume(settings, topic, group, fixed)  # same group: the poison's own offset is committed
    try:
        assert "replayed 1 dead letter(s)" in kefu_cli(settings, "replay", topic)
        await until(lambda: handled)
        assert "replayed 0 dead letter(s)" in kefu_cli(settings, "replay", topic)  # nothing is sent twice
        # Even a letter re-published again (a crash between publish and the offset commit) is handled once.
        await publish(settings, topic, event)
        await asyncio.sleep(2.0)
    finally:
        await broker.stop()
    assert handled == [event.event_id]
    [entry] = await list_dead_letters(settings.kafka_bootstrap, topic)
    assert entry.replayed
    as_json = json.loads(kefu_cli(settings, "list", topic, "--json").splitlines()[0])
    assert as_json["replayed"] is True and as_json["event_id"] == event.event_id and as_json["topic"] == topic
