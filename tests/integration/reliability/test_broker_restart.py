"""The broker goes away and comes back (same address, empty: Tansu's memory storage): a running service reconnects
on its own — its consumer handles a new event and its outbox relay publishes the result — without a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from kefu.tansu import create_topics, tansu_command, wait_port
from libs.common.broker import make_broker, publish_event
from libs.common.db import make_engine, make_sessionmaker
from libs.common.events import DatasetReady, all_topic_names
from libs.common.tables import ProcessedEvent
from services.trainer.app import create_app
from services.trainer.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.slow


class Broker:
    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the fixture kills it synchronously
            tansu_command(self.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await wait_port("127.0.0.1", self.port)
        await create_topics(self.address, all_topic_names())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def pg_url(fresh_pg_url: str) -> str:
    """A database of the test's own: on the worker's shared one, the trainer's job runner would take (and train)
    jobs other tests left queued, and the job for this test's event would wait behind them."""
    return fresh_pg_url


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker()
    yield b
    b.stop()


async def handled(db: str, event_id: str, timeout: float) -> None:
    engine = make_engine(db)
    try:
        sessions = make_sessionmaker(engine)
        async with asyncio.timeout(timeout):
            while True:
                async with sessions() as session:
                    if await session.scalar(select(ProcessedEvent).where(ProcessedEvent.event_id == event_id)):
                        return
                await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


async def failed_for(address: str, dataset_id: str, timeout: float) -> dict:
    consumer = AIOKafkaConsumer("model.failed", bootstrap_servers=address, auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    for r in records:
                        payload = json.loads(r.value)
                        if payload.get("dataset_id") == dataset_id:
                            return payload
    finally:
        await consumer.stop()


async def announce(settings: Settings, dataset_id: str) -> str:
    # A dataset that does not exist: the job fails at once and the trainer reports model.failed via its outbox.
    event = DatasetReady(dataset_id=dataset_id, uri="file:///nonexistent/ds", source="t.jsonl", counts={"train": 1})
    producer = make_broker(settings, service="test-producer")
    await producer.start()
    try:
        await publish_event(producer, event)
    finally:
        await producer.stop()
    return event.event_id


@pytest.mark.timeout(180)
async def test_services_reconnect_after_a_broker_restart(tmp_path: Path, broker: Broker, pg_url: str) -> None:
    await broker.start()
    settings = Settings(
        home=tmp_path / "home", database_url=pg_url, kafka_bootstrap=broker.address, migrate_on_start=False,
        kafka_session_timeout_ms=2000, kafka_heartbeat_interval_ms=500, outbox_poll_seconds=0.1,
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        first = await announce(settings, "ds-before-restart")
        await handled(pg_url, first, timeout=30)
        await failed_for(broker.address, "ds-before-restart", timeout=30)

        broker.stop()
        await asyncio.sleep(3)  # the service notices: fetches and heartbeats fail meanwhile
        await broker.start()

        second = await announce(settings, "ds-after-restart")
        await handled(pg_url, second, timeout=90)
        failed = await failed_for(broker.address, "ds-after-restart", timeout=60)
    assert "not found" in failed["reason"]
