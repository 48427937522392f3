"""Rollout against the real stack: a good engine goes canary and is promoted; a deliberately broken engine (its
model raises in Triton) goes canary, fails for real and is rolled back automatically while customers keep getting
answers; an operator rollback restores the engine before. Events are checked on the broker itself."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import tritonclient.grpc.aio as aioclient
from aiokafka import AIOKafkaConsumer
from openai import AsyncOpenAI
from sqlalchemy import select

from libs.common.db import make_engine, make_sessionmaker
from libs.common.events import Topic
from libs.common.tables import Answer
from tests.integration.conftest import FAQ, Built

from .conftest import (
    MODEL,
    RunningGateway,
    announce,
    copy_version,
    engine_event,
    record_engine_row,
    wait_for_state,
)

pytestmark = pytest.mark.slow
CANARY_MODEL = "kefu-canary"
BROKEN_MODEL_PY = """
class TritonPythonModel:
    def initialize(self, args):
        pass

    def execute(self, requests):
        raise RuntimeError("deliberately broken engine")
"""


def _payload(record: object) -> dict:
    try:
        value = json.loads(record.value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


async def events(bootstrap: str, topic: Topic, engine_id: str, timeout: float = 20) -> list[dict]:
    """Messages about ``engine_id`` on ``topic``, read from the broker from the beginning."""
    consumer = AIOKafkaConsumer(topic.value, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not found and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                # Other suites share the broker (e.g. the client tests publish their own payloads on every topic).
                found += [p for p in map(_payload, records) if p.get("engine_id") == engine_id]
    finally:
        await consumer.stop()
    return found


async def ask_until(gw: RunningGateway, engine_id: str, state: str, limit: int = 80) -> list[str]:
    """Chat until ``engine_id`` reaches ``state``; every answer must succeed. Returns the answers."""
    texts = []
    async with AsyncOpenAI(base_url=gw.http, api_key=gw.keys["app"], max_retries=0) as client:
        for i in range(limit):
            completion = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": FAQ[i % 2][0]}]
            )
            texts.append(completion.choices[0].message.content)
            if (await wait_for_state(gw.settings, engine_id, state, timeout=0.05, fail=False)) is not None:
                return texts
    pytest.fail(f"{engine_id} did not reach {state} within {limit} requests")


async def engine_answers(gw: RunningGateway, engine_id: str) -> list[Answer]:
    engine = make_engine(gw.settings.effective_database_url)
    async with make_sessionmaker(engine)() as session:
        rows = (await session.scalars(select(Answer).where(Answer.engine_id == engine_id))).all()
    await engine.dispose()
    return list(rows)


async def test_canary_promotion_then_broken_canary_rolled_back_then_manual_rollback(
    gateway: RunningGateway, triton_client: aioclient.InferenceServerClient, built: Built
) -> None:
    live = built.result.engine_id
    good_dir = copy_version(built, CANARY_MODEL, 2)
    bad_dir = copy_version(built, CANARY_MODEL, 3, model_py=BROKEN_MODEL_PY)
    await triton_client.load_model(CANARY_MODEL)  # version policy: the latest two, 2 and 3

    good = engine_event("sha-canary-good", CANARY_MODEL, 2)
    await record_engine_row(gateway.settings, good, good_dir)
    await announce(gateway.settings, good)
    canary = await wait_for_state(gateway.settings, good.engine_id, "canary")
    assert (canary.traffic_percent, canary.previous_engine_id) == (50.0, live)
    (started,) = await events(gateway.settings.kafka_bootstrap, Topic.DEPLOYMENT_LIVE, good.engine_id)
    assert started["traffic_percent"] == 50.0 and started["previous_engine_id"] == live

    texts = await ask_until(gateway, good.engine_id, "live")
    assert len(set(texts[0::2])) == 1  # same greedy answer from both engines (same weights)
    assert (await wait_for_state(gateway.settings, live, "retired")).reason.startswith("replaced")
    published = await events(gateway.settings.kafka_bootstrap, Topic.DEPLOYMENT_LIVE, good.engine_id)
    assert [e["traffic_percent"] for e in published] == [50.0, 100.0]
    assert {r.status for r in await engine_answers(gateway, good.engine_id)} == {"ok"}

    bad = engine_event("sha-canary-broken", CANARY_MODEL, 3)
    await record_engine_row(gateway.settings, bad, bad_dir)
    await announce(gateway.settings, bad)
    await wait_for_state(gateway.settings, bad.engine_id, "canary")
    texts = await ask_until(gateway, bad.engine_id, "rolled_back")
    assert all(texts)  # the canary's failures were answered by the live engine instead
    failed = await engine_answers(gateway, bad.engine_id)
    assert failed and {r.status for r in failed} == {"error"}
    (rolled,) = await events(gateway.settings.kafka_bootstrap, Topic.DEPLOYMENT_ROLLED_BACK, bad.engine_id)
    assert rolled["restored_engine_id"] == good.engine_id and "errors" in rolled["reason"]
    assert (await wait_for_state(gateway.settings, good.engine_id, "live")).traffic_percent == 100.0

    async with httpx.AsyncClient() as client:
        url = f"{gateway.http}/deployments/rollback"
        r = await client.post(url, json={"reason": "test"}, headers=gateway.auth("admin"))
        assert r.status_code == 200, r.text
        assert (r.json()["engine_id"], r.json()["restored_engine_id"]) == (good.engine_id, live)
        await wait_for_state(gateway.settings, live, "live")
        again = await client.post(url, json={}, headers=gateway.auth("admin"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "cannot_roll_back"
    async with AsyncOpenAI(base_url=gateway.http, api_key=gateway.keys["app"], max_retries=0) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "你好"}])
    assert completion.system_fingerprint == live
