"""The gateway's consumers (``engine.built``, ``knowledge.updated``) on an in-memory broker and SQLite
(tests/unit/handler_harness.py), with the gateway built as its lifespan builds it (``Gateway.build``; Triton is
never called on these paths). The same paths against Tansu, PostgreSQL and Triton: tests/integration/gateway.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from sqlalchemy import select

from libs.common.events import EngineBuilt, KnowledgeUpdated, Topic
from libs.common.tables import Deployment, Engine, KnowledgeUpdate, OutboxMessage
from services.gateway import handlers
from services.gateway.core import Gateway
from services.gateway.settings import Settings
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

BUILT, KNOWLEDGE = Topic.ENGINE_BUILT.value, Topic.KNOWLEDGE_UPDATED.value


def _built(engine_id: str = "sha-engine", version: int = 1) -> EngineBuilt:
    return EngineBuilt(
        engine_id=engine_id, model_id="sha-model", dataset_id="sha-dataset", triton_model="kefu-chat",
        triton_version=version, precision="fp32", quality={"agreement": 1.0}, passed_gate=True,
    )  # fmt: skip


def _record(event: EngineBuilt) -> Engine:
    """The builder's row that vouches for the event (the gateway deploys nothing else)."""
    return Engine(
        engine_id=event.engine_id, model_id=event.model_id, dataset_id=event.dataset_id,
        triton_model=event.triton_model, triton_version=event.triton_version, precision=event.precision,
        quality=dict(event.quality), passed_gate=True, uri="file:///nowhere",
    )  # fmt: skip


@pytest.fixture
async def gateway(tmp_path: Path):
    settings = unit_settings(Settings, tmp_path / "home")
    rt = await sqlite_runtime("gateway", settings)
    gw = Gateway.build(rt, settings)
    handlers.register(gw)
    letters = {topic: dead_letters(rt.broker, topic) for topic in (BUILT, KNOWLEDGE)}
    try:
        async with TestKafkaBroker(rt.broker):
            yield gw, letters
    finally:
        await gw.triton.close()
        await rt.engine.dispose()


async def test_a_redelivered_engine_built_deploys_once(gateway) -> None:
    gw, letters = gateway
    rt, event = gw.runtime, _built()
    async with rt.sessions() as session, session.begin():
        session.add(_record(event))
    await deliver_twice(rt.broker, event)
    assert await processed(rt, "gateway") == 1
    assert await count(rt, Deployment) == 1 and await count(rt, Deployment, Deployment.state == "live") == 1
    # one deployment.live staged for the relay, and the routing table already serves the engine
    assert await count(rt, OutboxMessage, OutboxMessage.topic == Topic.DEPLOYMENT_LIVE.value) == 1
    assert gw.router.live is not None and gw.router.live.engine_id == event.engine_id
    assert letters[BUILT] == []


async def test_an_engine_built_without_a_builder_record_is_dead_lettered_not_deployed(gateway) -> None:
    gw, letters = gateway
    await publish_raw(gw.runtime.broker, BUILT, _built("sha-forged").model_dump_json())
    [letter] = letters[BUILT]
    assert letter["error"].startswith("UntrustedEngine") and "no engine record" in letter["error"]
    assert await count(gw.runtime, Deployment) == 0 and gw.router.live is None


@pytest.mark.parametrize(
    "body",
    [b"\xfe", "not json", invalid_payload(_built(), triton_version=0), invalid_payload(_built(), precision="fp8")],
    ids=["bytes", "text", "version-0", "unknown-precision"],
)
async def test_a_poison_engine_built_is_dead_lettered_at_once(gateway, body: bytes | str) -> None:
    gw, letters = gateway
    await publish_raw(gw.runtime.broker, BUILT, body)
    [letter] = letters[BUILT]
    assert letter["consumer"] == "gateway"
    assert letter["error"].split(":")[0] in {"JSONDecodeError", "UnicodeDecodeError", "ValidationError"}
    assert await count(gw.runtime, Deployment) == 0 and await processed(gw.runtime, "gateway") == 0


async def test_a_redelivered_knowledge_update_is_applied_once(gateway, caplog: pytest.LogCaptureFixture) -> None:
    gw, letters = gateway
    rt = gw.runtime
    async with rt.sessions() as session, session.begin():
        row = KnowledgeUpdate(entry_id="faq-1", action="replace", question="怎么退款？", answer="七天内原路退回。")
        session.add(row)
    async with rt.sessions() as session:
        update_id = await session.scalar(select(KnowledgeUpdate.id))
    event = KnowledgeUpdated(
        entry_id="faq-1", action="replace", question="怎么退款？", answer="七天内原路退回。", update_id=update_id
    )
    with caplog.at_level("INFO", logger="kefu.gateway"):
        await deliver_twice(rt.broker, event)
    # The table is the record: the first delivery applied the row, the second found nothing new.
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("knowledge.updated faq-1")]
    assert said == [f"knowledge.updated faq-1 (replace): {n} update(s) applied" for n in (1, 0)]
    assert gw.knowledge.last_update_id == update_id
    assert letters[KNOWLEDGE] == []


async def test_a_poison_knowledge_update_is_dead_lettered(gateway) -> None:
    gw, letters = gateway
    await publish_raw(gw.runtime.broker, KNOWLEDGE, '{"entry_id": "faq-1", "action": "delete-everything"}')
    [letter] = letters[KNOWLEDGE]
    assert letter["error"].startswith("ValidationError") and gw.knowledge.last_update_id == 0
