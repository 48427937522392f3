"""Poison events on every consumed topic go to ``<topic>.dlq``, and each consumer still handles the good event
published right after them.

The real services (their ``create_app`` lifespans: broker, handlers, workers, outbox relays) run in this process
against their own Tansu (so the poison never reaches another suite's consumers) and a fresh PostgreSQL database.
"Handled" means: the consumer group committed past the good event and the good event is not in the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI

from libs.common.events import (
    DatasetReady,
    DeploymentRolledBack,
    EngineBuilt,
    Event,
    FeedbackFlagged,
    ModelTrained,
)
from tests.conftest import free_port, running_tansu

pytestmark = pytest.mark.slow

#: topic → (consumer group, a good event every handler can finish quickly: a missing dataset/model fails the job
#: at once, a gate-failed engine is not deployed, an unknown engine's rollback is a no-op).
GOOD: dict[str, tuple[str, Event]] = {
    "dataset.ready": (
        "kefu-trainer",
        DatasetReady(dataset_id="ds-poison", uri="file:///nonexistent/ds", source="t.jsonl", counts={"train": 1}),
    ),
    "model.trained": (
        "kefu-builder",
        ModelTrained(
            model_id="m-poison",
            dataset_id="ds-poison",
            run_id="r",
            uri="file:///nonexistent/m",
            base_model="tiny",
            metrics={},
            chat_template_sha256="ab",
        ),
    ),
    "engine.built": (
        "kefu-gateway",
        EngineBuilt(
            engine_id="e-poison",
            model_id="m-poison",
            dataset_id="ds-poison",
            triton_model="kefu-chat",
            triton_version=1,
            precision="fp32",
            quality={},
            passed_gate=False,
        ),
    ),
    "feedback.flagged": (
        "kefu-feedback-batcher",
        FeedbackFlagged(flag_id="f-poison", answer_id="a-poison", reason="r", correction="c", agent="x"),
    ),
    "deployment.rolled_back": (
        "kefu-builder",
        DeploymentRolledBack(engine_id="e-unknown", restored_engine_id="e-other", reason="test"),
    ),
}
POISON = [b"{not json", json.dumps({"unexpected": "shape", "schema_version": 99}).encode(), b"\xff\xfe\x00"]


@pytest.fixture
def own_broker() -> Iterator[str]:
    with running_tansu() as bootstrap:
        yield bootstrap


def _apps(home: Path, db: str, kafka: str) -> list[FastAPI]:
    from services.builder.app import create_app as builder_app
    from services.builder.settings import Settings as BuilderSettings
    from services.feedback.app import create_app as feedback_app
    from services.feedback.settings import Settings as FeedbackSettings
    from services.gateway.app import create_app as gateway_app
    from services.gateway.settings import Settings as GatewaySettings
    from services.trainer.app import create_app as trainer_app
    from services.trainer.settings import Settings as TrainerSettings

    common: dict[str, Any] = {
        "home": home, "database_url": db, "kafka_bootstrap": kafka, "migrate_on_start": False,
        "kafka_session_timeout_ms": 2000, "kafka_heartbeat_interval_ms": 500, "outbox_poll_seconds": 0.1,
    }  # fmt: skip
    return [
        trainer_app(TrainerSettings(**common)),
        builder_app(BuilderSettings(**common, triton_grpc_port=free_port())),
        gateway_app(GatewaySettings(**common, triton_grpc_port=free_port(), gateway_grpc_port=free_port())),
        feedback_app(FeedbackSettings(**common)),
    ]


@contextlib.asynccontextmanager
async def running(apps: list[FastAPI]) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield


async def committed(kafka: str, group: str, tp: TopicPartition) -> int:
    """The group's committed offset (OffsetFetch through a consumer that never joins; Tansu's admin API differs)."""
    probe = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        offset = await probe.committed(tp)
        return -1 if offset is None else offset
    finally:
        await probe.stop()


async def dead_letters(kafka: str, topics: list[str]) -> list[dict]:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=kafka, auto_offset_reset="earliest")
    await consumer.start()
    try:
        got: list[dict] = []
        for records in (await consumer.getmany(timeout_ms=1500)).values():
            got.extend(json.loads(r.value) for r in records)
        return got
    finally:
        await consumer.stop()


@pytest.mark.timeout(120)
async def test_poison_goes_to_dlq_and_every_consumer_keeps_going(tmp_path: Path, own_broker: str, fb_db: str) -> None:
    async with running(_apps(tmp_path / "home", fb_db, own_broker)):
        producer = AIOKafkaProducer(bootstrap_servers=own_broker, enable_idempotence=False)
        await producer.start()
        try:
            sent: dict[str, tuple[str, TopicPartition, int, str]] = {}
            for topic, (group, event) in GOOD.items():
                key = event.key.encode()
                for body in POISON:  # same key as the good event: same partition, so it must get past them
                    await producer.send_and_wait(topic, body, key=key)
                meta = await producer.send_and_wait(topic, event.model_dump_json().encode(), key=key)
                sent[topic] = (group, TopicPartition(topic, meta.partition), meta.offset, event.event_id)

            pending = dict(sent)
            async with asyncio.timeout(60):
                while pending:
                    for topic, (group, tp, offset, _) in list(pending.items()):
                        if await committed(own_broker, group, tp) > offset:
                            del pending[topic]
                    await asyncio.sleep(0.3)
        finally:
            await producer.stop()

    letters = await dead_letters(own_broker, [f"{t}.dlq" for t in GOOD])
    for topic, (_, _, _, event_id) in sent.items():
        mine = [d for d in letters if d["topic"] == topic]
        assert len(mine) >= len(POISON), f"{topic}: {len(mine)} dead letters"
        assert not [d for d in mine if event_id in d["raw"]], f"{topic}: the good event was dead-lettered"
