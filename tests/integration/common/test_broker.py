"""Event contracts and the dead-letter policy against the real broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
from aiokafka import AIOKafkaConsumer

from libs.common.broker import consumer_options, make_broker, publish_event
from libs.common.events import (
    DatasetReady,
    DeploymentLive,
    DeploymentRolledBack,
    EngineBuilt,
    Event,
    FeedbackFlagged,
    ModelFailed,
    ModelTrained,
    Topic,
)

SAMPLES: list[Event] = [
    DatasetReady(dataset_id="ds-1", uri="file:///d", source="faq.csv", counts={"train": 9, "eval": 1}),
    ModelTrained(
        model_id="m-1",
        dataset_id="ds-1",
        run_id="r",
        uri="file:///m",
        base_model="tiny",
        metrics={"train_exact_match": 1.0},
        chat_template_sha256="ab",
    ),
    ModelFailed(dataset_id="ds-1", reason="out of memory"),
    EngineBuilt(
        engine_id="e-1",
        model_id="m-1",
        dataset_id="ds-1",
        triton_model="kefu-chat",
        triton_version=1,
        precision="int8",
        quality={"agreement": 1.0},
        passed_gate=True,
    ),
    DeploymentLive(
        engine_id="e-1",
        model_id="m-1",
        dataset_id="ds-1",
        triton_model="kefu-chat",
        triton_version=1,
        traffic_percent=100,
        previous_engine_id=None,
    ),
    DeploymentRolledBack(engine_id="e-2", restored_engine_id="e-1", reason="error rate 30%"),
    FeedbackFlagged(flag_id="f-1", answer_id="a-1", reason="wrong", correction="正确答案", agent="alice"),
]


async def read_topic(bootstrap: str, topic: str, done: Callable[[list], bool], timeout: float = 20.0) -> list:
    """Records of ``topic`` from the beginning until ``done(records)`` or ``timeout``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got: list = []
    try:
        async with asyncio.timeout(timeout):
            while not done(got):
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    got.extend(records)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return got


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.topic.value)
async def test_every_event_model_round_trips_through_the_broker(settings, event: Event) -> None:
    broker = make_broker(settings, service="roundtrip")
    await broker.start()
    try:
        await publish_event(broker, event)
    finally:
        await broker.stop()

    def mine_of(records: list) -> list:
        return [r for r in records if dict(r.headers or ()).get("x-kefu-event-id") == event.event_id.encode()]

    mine = mine_of(await read_topic(settings.kafka_bootstrap, event.topic.value, lambda rs: bool(mine_of(rs))))
    assert len(mine) == 1
    assert mine[0].key == event.key.encode()
    back = type(event).model_validate_json(mine[0].value)
    assert back == event


async def test_poison_messages_go_to_the_dlq_and_the_consumer_keeps_going(settings) -> None:
    broker = make_broker(settings, service="poison-test")
    handled: list[DatasetReady] = []
    group = f"poison-{uuid.uuid4().hex[:6]}"
    marker = uuid.uuid4().hex

    @broker.subscriber(Topic.DATASET_READY.value, **consumer_options(settings, group=group))
    async def on_ready(event: DatasetReady) -> None:
        if event.source == "explode":
            raise RuntimeError("handler bug")
        handled.append(event)

    good = [DatasetReady(dataset_id=f"ok-{i}-{marker}", uri="file:///d", source=marker) for i in range(2)]
    await broker.start()
    try:
        await broker.publish(b"{not json" + marker.encode(), topic=Topic.DATASET_READY.value, key=b"bad")
        await publish_event(broker, good[0])
        await broker.publish(json.dumps({"dataset_id": "x", "marker": marker}), topic=Topic.DATASET_READY.value)
        await broker.publish(
            json.dumps({"dataset_id": "v2", "uri": "u", "source": marker, "schema_version": 2}),
            topic=Topic.DATASET_READY.value,
        )
        await publish_event(broker, DatasetReady(dataset_id=f"boom-{marker}", uri="u", source="explode"))
        await publish_event(broker, good[1])
        async with asyncio.timeout(30):
            while {e.dataset_id for e in handled} < {g.dataset_id for g in good}:
                await asyncio.sleep(0.1)

        def mine_of(records: list) -> list:
            letters = [json.loads(r.value) for r in records]
            return [x for x in letters if x["consumer"] == "poison-test" and marker in x["raw"]]

        # Partitions are consumed independently: poison on another partition may be handled after the good ones.
        mine = mine_of(
            await read_topic(settings.kafka_bootstrap, Topic.DATASET_READY.dlq, lambda rs: len(mine_of(rs)) >= 4)
        )
    finally:
        await broker.stop()
    errors = " | ".join(x["error"] for x in mine)
    assert len(mine) == 4, errors
    assert all(x["topic"] == Topic.DATASET_READY.value for x in mine)
    assert "handler bug" in errors and "schema_version" in errors and "uri" in errors
    assert any(x["raw"].startswith("{not json") for x in mine)
    assert any("JSONDecodeError" in x["error"] for x in mine)
    assert datetime.fromisoformat(mine[0]["at"].replace("Z", "+00:00")).tzinfo is not None
