"""The trainer's ``dataset.ready`` consumer on an in-memory broker and SQLite (tests/unit/handler_harness.py).

The handler only queues a training job (the job runner trains, outside the consumer), so nothing here trains.
The same paths against Tansu and PostgreSQL: tests/integration/trainer and tests/integration/reliability.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker

from libs.common.events import DatasetReady, Topic
from libs.common.tables import Job
from services.trainer import handlers
from services.trainer.settings import Settings
from tests.unit.handler_harness import (
    count,
    dead_letters,
    deliver_twice,
    invalid_payload,
    processed,
    publish_raw,
    sqlite_runtime,
    unit_settings,
)

TOPIC = Topic.DATASET_READY.value


def _event(dataset_id: str = "sha-unit-dataset") -> DatasetReady:
    return DatasetReady(dataset_id=dataset_id, uri=f"datasets/{dataset_id}", source="unit", counts={"train": 3})


@pytest.fixture
async def trainer(tmp_path: Path):
    rt = await sqlite_runtime("trainer", unit_settings(Settings, tmp_path / "home"))
    wake = asyncio.Event()
    handlers.register(rt, wake)
    letters = dead_letters(rt.broker, TOPIC)
    try:
        async with TestKafkaBroker(rt.broker):
            yield rt, wake, letters
    finally:
        await rt.engine.dispose()


async def test_a_redelivered_dataset_ready_queues_one_training_job(trainer) -> None:
    rt, wake, letters = trainer
    event = _event()
    await deliver_twice(rt.broker, event)
    assert await processed(rt, "trainer") == 1
    assert await count(rt, Job, Job.kind == handlers.JOB_KIND, Job.key == event.dataset_id) == 1
    assert wake.is_set() and letters == []


async def test_a_new_event_for_a_dataset_already_queued_does_not_queue_it_again(trainer) -> None:
    rt, _, letters = trainer
    await deliver_twice(rt.broker, _event())
    await deliver_twice(rt.broker, _event())  # another event id, same dataset (e.g. re-ingested)
    assert await processed(rt, "trainer") == 2
    assert await count(rt, Job, Job.kind == handlers.JOB_KIND) == 1 and letters == []


@pytest.mark.parametrize(
    "body",
    [b"\xff not json", "[1, 2", invalid_payload(_event(), dataset_id=""), invalid_payload(_event(), uri=None)],
    ids=["bytes", "truncated-json", "empty-dataset-id", "missing-uri"],
)
async def test_a_poison_dataset_ready_is_dead_lettered_at_once(trainer, body: bytes | str) -> None:
    rt, wake, letters = trainer
    await publish_raw(rt.broker, TOPIC, body)
    assert len(letters) == 1
    letter = letters[0]
    assert letter["topic"] == TOPIC and letter["consumer"] == "trainer"
    assert letter["error"].split(":")[0] in {"JSONDecodeError", "UnicodeDecodeError", "ValidationError"}
    assert await count(rt, Job) == 0 and await processed(rt, "trainer") == 0 and not wake.is_set()
