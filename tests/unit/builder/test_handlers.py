"""The builder's consumers (``model.trained``, ``deployment.rolled_back``) on an in-memory broker and SQLite
(tests/unit/handler_harness.py).

``model.trained`` only queues a build job (the job runner exports and gates, outside the consumer), so nothing is
built here. The same paths against Tansu, PostgreSQL and Triton: tests/integration/builder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker

from libs.common.events import DeploymentRolledBack, ModelTrained, Topic
from libs.common.tables import Engine, Job
from services.builder import handlers
from services.builder.settings import Settings
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


def _trained(model_id: str = "sha-unit-model") -> ModelTrained:
    return ModelTrained(
        model_id=model_id,
        dataset_id="sha-unit-dataset",
        uri=f"models/{model_id}",
        base_model="offline-base-v1",
        chat_template_sha256="0" * 64,
    )


@pytest.fixture
async def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rt = await sqlite_runtime("builder", unit_settings(Settings, tmp_path / "home"))
    retired: list[tuple[str, int]] = []

    async def record_retire(settings: Settings, name: str, version: int) -> None:
        retired.append((name, version))

    # Retiring a version reloads Triton: recorded instead (the retire itself is tested on a real Triton in
    # tests/integration/builder); what is tested here is that a redelivered rollback retires once.
    monkeypatch.setattr(handlers, "retire_version", record_retire)
    wake = asyncio.Event()
    handlers.register(rt, wake)
    letters = {
        topic: dead_letters(rt.broker, topic)
        for topic in (Topic.MODEL_TRAINED.value, Topic.DEPLOYMENT_ROLLED_BACK.value)
    }
    try:
        async with TestKafkaBroker(rt.broker):
            yield rt, wake, letters, retired
    finally:
        await rt.engine.dispose()


async def test_a_redelivered_model_trained_queues_one_build(builder) -> None:
    rt, wake, letters, _ = builder
    event = _trained()
    await deliver_twice(rt.broker, event)
    assert await processed(rt, "builder") == 1
    assert await count(rt, Job, Job.kind == handlers.JOB_KIND, Job.key == event.model_id) == 1
    assert wake.is_set() and letters[Topic.MODEL_TRAINED.value] == []


@pytest.mark.parametrize(
    "body",
    [b"\x00\x01", "{", invalid_payload(_trained(), model_id=""), invalid_payload(_trained(), metrics={"em": "high"})],
    ids=["binary", "truncated-json", "empty-model-id", "non-numeric-metric"],
)
async def test_a_poison_model_trained_is_dead_lettered_at_once(builder, body: bytes | str) -> None:
    rt, wake, letters, _ = builder
    await publish_raw(rt.broker, Topic.MODEL_TRAINED.value, body)
    [letter] = letters[Topic.MODEL_TRAINED.value]
    assert letter["consumer"] == "builder" and letter["raw"]
    assert letter["error"].split(":")[0] in {"JSONDecodeError", "UnicodeDecodeError", "ValidationError"}
    assert await count(rt, Job) == 0 and not wake.is_set()


async def test_a_redelivered_rollback_retires_the_version_once(builder) -> None:
    rt, _, letters, retired = builder
    async with rt.sessions() as session, session.begin():
        session.add(
            Engine(
                engine_id="sha-canary", model_id="sha-unit-model", dataset_id="sha-unit-dataset",
                triton_model="kefu-chat", triton_version=3, precision="fp32", quality={}, passed_gate=True,
                uri="file:///nowhere",
            )
        )  # fmt: skip
    rollback = DeploymentRolledBack(engine_id="sha-canary", restored_engine_id="sha-live", reason="unit")
    await deliver_twice(rt.broker, rollback)
    assert retired == [("kefu-chat", 3)]
    assert await processed(rt, "builder-rollback") == 1 and letters[Topic.DEPLOYMENT_ROLLED_BACK.value] == []


async def test_a_rollback_of_an_engine_this_builder_never_built_retires_nothing(builder) -> None:
    rt, _, letters, retired = builder
    await deliver_twice(rt.broker, DeploymentRolledBack(engine_id="sha-other", restored_engine_id=None, reason="x"))
    assert retired == [] and letters[Topic.DEPLOYMENT_ROLLED_BACK.value] == []


async def test_a_poison_rollback_is_dead_lettered(builder) -> None:
    rt, _, letters, retired = builder
    await publish_raw(rt.broker, Topic.DEPLOYMENT_ROLLED_BACK.value, '{"engine_id": "sha-x"}')
    [letter] = letters[Topic.DEPLOYMENT_ROLLED_BACK.value]
    assert letter["error"].startswith("ValidationError") and retired == []
