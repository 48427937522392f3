"""The feedback service against real PostgreSQL and Tansu: a fresh database per test, seeded rows, a live server.

Each test gets its own database, copied from a migrated template (fast), because the release folds in EVERY
approved flag in the database: flags left over from another test would change what a release contains.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.artifacts import ArtifactStore
from libs.common.db import make_engine, make_sessionmaker
from libs.common.tables import Answer, ApiKey, Deployment, utcnow
from libs.datasets.options import IngestOptions
from libs.datasets.pipeline import prepare_dataset, write_dataset
from libs.datasets.store import store_dataset
from services.feedback.app import create_app
from services.feedback.settings import Settings
from tests.conftest import free_port

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample" / "cloudmax_faq.jsonl"


@pytest.fixture
def fb_db(fresh_pg_url: str) -> str:
    return fresh_pg_url


@pytest.fixture
def fb_settings(tmp_path: Path, tansu: str, fb_db: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=fb_db,
        kafka_bootstrap=tansu,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=500,
        migrate_on_start=False,
        outbox_poll_seconds=0.05,
        feedback_port=free_port(),
    )


@pytest.fixture
async def fb_sessions(fb_db: str) -> AsyncIterator[async_sessionmaker]:
    engine = make_engine(fb_db)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def add_key(sessions: async_sessionmaker, role: str, *, revoked: bool = False) -> str:
    """An API key row as the gateway writes it (SHA-256 hex of the key); returns the key."""
    key_id = "k" + secrets.token_hex(6)
    key = f"kefu_{key_id}_{secrets.token_urlsafe(24)}"
    async with sessions() as session, session.begin():
        session.add(
            ApiKey(
                key_id=key_id,
                key_hash=hashlib.sha256(key.encode()).hexdigest(),
                role=role,
                name=f"test {role}",
                revoked_at=utcnow() if revoked else None,
            )
        )
    return key


async def seed_live_dataset(sessions: async_sessionmaker, home: Path, *, live: bool = True) -> str:
    """The bundled sample ingested and stored as a dataset, served by a live deployment (as the gateway records)."""
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    prepared = prepare_dataset(records, IngestOptions(), source=SAMPLE.name)
    out = home / "work" / prepared.dataset_id
    write_dataset(prepared, out)
    async with sessions() as session, session.begin():
        await store_dataset(session, ArtifactStore(home), out, prepared.dataset_id, prepared.card, SAMPLE.name)
    if live:
        async with sessions() as session, session.begin():
            session.add(
                Deployment(
                    engine_id="eng-live",
                    model_id="mdl-live",
                    dataset_id=prepared.dataset_id,
                    triton_model="kefu-chat",
                    triton_version=1,
                    state="live",
                    traffic_percent=100.0,
                )
            )
    return prepared.dataset_id


async def add_answer(sessions: async_sessionmaker, question: str, answer: str, dataset_id: str | None = None) -> str:
    answer_id = f"ans-{uuid.uuid4().hex[:12]}"
    async with sessions() as session, session.begin():
        session.add(
            Answer(
                answer_id=answer_id,
                question=question,
                answer=answer,
                engine_id="eng-live",
                model_id="mdl-live",
                dataset_id=dataset_id,
                triton_model="kefu-chat",
                triton_version=1,
            )
        )
    return answer_id


@dataclass
class Running:
    settings: Settings
    url: str


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[Running]:
    """The real app under uvicorn on its own thread and loop, so sync callers (a browser driver) can use it too."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.feedback_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="feedback-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("feedback service did not start")
            time.sleep(0.05)
        yield Running(settings, f"http://127.0.0.1:{settings.feedback_port}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def consume(bootstrap: str, topic: str, match: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
    """The first JSON event on ``topic`` whose fields include ``match`` (the topic is shared by the session: other
    suites' poison messages on it are skipped)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        try:
                            payload = json.loads(record.value)
                        except ValueError:
                            continue
                        if isinstance(payload, dict) and all(payload.get(k) == v for k, v in match.items()):
                            return payload
    finally:
        await consumer.stop()
