"""Idempotent consumption and the transactional outbox, on real PostgreSQL and the real broker."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid

from sqlalchemy import func, select

from libs.common.broker import consumer_options, make_broker, publish_event
from libs.common.events import DatasetReady, ModelFailed, Topic
from libs.common.outbox import claim_event, enqueue, publish_pending, run_relay
from libs.common.tables import EventLedger, OutboxMessage
from tests.integration.common.test_broker import read_topic


async def test_claim_event_is_true_once_per_consumer(db_sessions) -> None:
    event_id = uuid.uuid4().hex
    async with db_sessions() as s, s.begin():
        assert await claim_event(s, "trainer", event_id)
    async with db_sessions() as s, s.begin():
        assert not await claim_event(s, "trainer", event_id)
        assert await claim_event(s, "builder", event_id)


async def test_a_redelivered_event_is_handled_once(settings, db_sessions) -> None:
    broker = make_broker(settings, service="dedup-test")
    seen = asyncio.Event()
    deliveries = 0
    event = DatasetReady(dataset_id=f"ds-{uuid.uuid4().hex[:8]}", uri="file:///d", source="dup")

    @broker.subscriber(Topic.DATASET_READY.value, **consumer_options(settings, group=f"dedup-{uuid.uuid4().hex[:6]}"))
    async def on_ready(ev: DatasetReady) -> None:
        nonlocal deliveries
        if ev.dataset_id != event.dataset_id:
            return
        deliveries += 1
        async with db_sessions() as s, s.begin():
            if await claim_event(s, "dedup-test", ev.event_id):
                enqueue(s, ModelFailed(dataset_id=ev.dataset_id, reason="side effect"))
        if deliveries == 2:
            seen.set()

    await broker.start()
    try:
        await publish_event(broker, event)
        await publish_event(broker, event)  # the same event again, as a redelivery after a crash would
        await asyncio.wait_for(seen.wait(), 30)
    finally:
        await broker.stop()
    async with db_sessions() as s:
        n = await s.scalar(select(func.count()).select_from(EventLedger).where(EventLedger.key == event.dataset_id))
    assert deliveries == 2
    assert n == 1


CRASHING_PRODUCER = textwrap.dedent(
    """
    import asyncio, os, sys
    from libs.common.db import make_engine, make_sessionmaker
    from libs.common.events import DatasetReady
    from libs.common.outbox import enqueue

    async def main():
        sessions = make_sessionmaker(make_engine(sys.argv[1]))
        async with sessions() as s, s.begin():
            enqueue(s, DatasetReady(dataset_id=sys.argv[2], uri="file:///d", source="crash"))
        os._exit(137)  # dies after COMMIT, before any relay could publish

    asyncio.run(main())
    """
)


async def test_outbox_publishes_an_event_whose_producer_crashed_after_commit(settings, db_sessions, pg_url) -> None:
    dataset_id = f"crash-{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_PRODUCER, pg_url, dataset_id, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await proc.communicate()
    assert proc.returncode == 137, stderr.decode()
    async with db_sessions() as s:
        row = await s.scalar(select(OutboxMessage).where(OutboxMessage.key == dataset_id))
    assert row is not None and row.published_at is None

    broker = make_broker(settings, service="relay-test")
    await broker.start()
    wake = asyncio.Event()
    relay = asyncio.create_task(run_relay(broker, db_sessions, poll_seconds=0.05, wake=wake))
    try:

        def mine(rs: list) -> list:
            return [r for r in rs if r.key == dataset_id.encode()]

        records = mine(await read_topic(settings.kafka_bootstrap, Topic.DATASET_READY.value, lambda rs: bool(mine(rs))))
        # The relay marks the row right after the broker acknowledged it; give it that moment before stopping it.
        async with asyncio.timeout(10):
            while True:
                async with db_sessions() as s:
                    row = await s.scalar(select(OutboxMessage).where(OutboxMessage.key == dataset_id))
                if row.published_at is not None:
                    break
                await asyncio.sleep(0.05)
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
        await broker.stop()
    assert len(records) == 1
    assert DatasetReady.model_validate_json(records[0].value).source == "crash"
    async with db_sessions() as s:
        row = await s.scalar(select(OutboxMessage).where(OutboxMessage.key == dataset_id))
    assert row.published_at is not None and row.attempts == 1


async def test_relay_keeps_rows_when_the_broker_is_unreachable(settings, db_sessions) -> None:
    dataset_id = f"down-{uuid.uuid4().hex[:8]}"
    async with db_sessions() as s, s.begin():
        enqueue(s, DatasetReady(dataset_id=dataset_id, uri="file:///d", source="down"))
    broker = make_broker(settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"}), service="down")
    # Not started: publishing fails like a lost broker connection would.
    assert await publish_pending(broker, db_sessions) == 0
    async with db_sessions() as s:
        row = await s.scalar(select(OutboxMessage).where(OutboxMessage.key == dataset_id))
    assert row.published_at is None and row.attempts == 1 and row.last_error


async def test_concurrent_relays_send_each_row_once(settings, db_sessions) -> None:
    marker = uuid.uuid4().hex[:8]
    async with db_sessions() as s, s.begin():
        for i in range(30):
            enqueue(s, DatasetReady(dataset_id=f"many-{marker}-{i}", uri="file:///d", source="many"))
    brokers = [make_broker(settings, service=f"relay-{i}") for i in range(3)]
    for b in brokers:
        await b.start()
    try:
        counts = await asyncio.gather(*(publish_pending(b, db_sessions, limit=7) for b in brokers for _ in range(3)))
        while await publish_pending(brokers[0], db_sessions):
            pass  # rows other tests left unpublished may share the outbox
    finally:
        for b in brokers:
            await b.stop()
    assert sum(counts) >= 30

    def mine(rs: list) -> list:
        return [r for r in rs if r.key and r.key.decode().startswith(f"many-{marker}-")]

    records = mine(
        await read_topic(settings.kafka_bootstrap, Topic.DATASET_READY.value, lambda rs: len(mine(rs)) >= 30)
    )
    # Exactly once each: a row sent by two relays would show up twice here.
    assert sorted(r.key.decode() for r in records) == sorted(f"many-{marker}-{i}" for i in range(30))
