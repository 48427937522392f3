"""A running gateway (HTTP + gRPC in one process, uvicorn on free ports) against real Tansu, PostgreSQL and Triton.

The tiny engine, its Triton repository and the tritonserver come from tests/integration/conftest.py (shared with
the builder suite, so one export and one server per session). Engines are deployed the real way: ``engine.built``
published to the broker, consumed by the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc.aio as aioclient
import uvicorn
from sqlalchemy import select

from libs.common.apikeys import create_key
from libs.common.broker import make_broker, publish_event
from libs.common.db import make_engine, make_sessionmaker, upgrade_database
from libs.common.events import EngineBuilt
from libs.common.knowledge import KNOWLEDGE_FILE, entries_from_rows, to_jsonl
from libs.common.tables import Answer, Deployment, Engine
from services.builder.repository import config_pbtxt
from services.gateway.app import create_app
from services.gateway.settings import Settings
from tests.conftest import free_port
from tests.integration.conftest import FAQ, Built, Triton

MODEL = "kefu-chat"


@dataclass
class RunningGateway:
    settings: Settings
    http: str  # base URL incl. /v1
    grpc: str
    keys: dict[str, str]  # role -> key

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def gateway_settings(home: Path, database_url: str, kafka: str, triton_url: str, **overrides: object) -> Settings:
    host, port = triton_url.rsplit(":", 1)
    values: dict = {
        "home": home,
        "database_url": database_url,
        "kafka_bootstrap": kafka,
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 500,
        "outbox_poll_seconds": 0.05,
        "migrate_on_start": False,
        "triton_host": host,
        "triton_grpc_port": int(port),
        "gateway_port": free_port(),
        "gateway_grpc_port": free_port(),
        "rollout_poll_seconds": 0.2,
        "gateway_grace_seconds": 1.0,
        **overrides,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def run_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    """Serve ``create_app(settings)`` with uvicorn in this event loop; admin/app/agent keys created up front."""
    engine = make_engine(settings.effective_database_url)
    sessions = make_sessionmaker(engine)
    keys = {}
    async with sessions() as session, session.begin():
        for role in ("app", "agent", "admin"):
            keys[role] = (await create_key(session, role, name=f"test {role}"))[1]
    await engine.dispose()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.gateway_port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(300):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        else:
            pytest.fail("gateway did not start")
        yield RunningGateway(
            settings, f"http://127.0.0.1:{settings.gateway_port}/v1", f"127.0.0.1:{settings.gateway_grpc_port}", keys
        )
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


async def announce(settings: Settings, event: EngineBuilt) -> None:
    broker = make_broker(settings, service="test-builder")
    await broker.start()
    try:
        await publish_event(broker, event)
    finally:
        await broker.stop()


async def wait_for_state(
    settings: Settings, engine_id: str, state: str, timeout: float = 30, *, fail: bool = True
) -> Deployment | None:
    """The engine's latest deployment once it is in ``state``; fails the test (or returns None) on timeout."""
    engine = make_engine(settings.effective_database_url)
    try:
        sessions = make_sessionmaker(engine)
        dep = None
        for _ in range(max(1, int(timeout * 10))):
            async with sessions() as session:
                dep = await session.scalar(
                    select(Deployment).where(Deployment.engine_id == engine_id).order_by(Deployment.id.desc()).limit(1)
                )
            if dep is not None and dep.state == state:
                return dep
            await asyncio.sleep(0.1)
        if fail:
            last = f"{dep.state}: {dep.reason} evidence={dep.evidence}" if dep else None
            pytest.fail(f"engine {engine_id} never reached {state} (last: {last})")
        return None
    finally:
        await engine.dispose()


async def answer_row(gw: RunningGateway, answer_id: str, timeout: float = 10) -> Answer:
    engine = make_engine(gw.settings.effective_database_url)
    try:
        for _ in range(int(timeout * 20)):
            async with make_sessionmaker(engine)() as session:
                row = await session.get(Answer, answer_id)
            if row is not None:
                return row
            await asyncio.sleep(0.05)
        pytest.fail(f"answer {answer_id} was never logged")
    finally:
        await engine.dispose()


def engine_event(engine_id: str, model: str, version: int) -> EngineBuilt:
    return EngineBuilt(
        engine_id=engine_id,
        model_id=f"model-{engine_id}",
        dataset_id="sha-test-dataset",
        triton_model=model,
        triton_version=version,
        precision="fp32",
        quality={"agreement": 1.0},
        passed_gate=True,
    )


async def record_engine_row(settings: Settings, event: EngineBuilt, version_dir: Path) -> None:
    """The builder's record of a hand-made engine (the gateway deploys only an ``engine.built`` its record backs);
    kept if a test of this session recorded it already."""
    engine = make_engine(settings.effective_database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            if await session.get(Engine, event.engine_id) is None:
                session.add(
                    Engine(
                        engine_id=event.engine_id, model_id=event.model_id, dataset_id=event.dataset_id,
                        triton_model=event.triton_model, triton_version=event.triton_version, precision=event.precision,
                        quality=event.quality, passed_gate=event.passed_gate, uri=version_dir.as_uri(),
                    )
                )  # fmt: skip
    finally:
        await engine.dispose()


def copy_version(built: Built, model: str, version: int, *, model_py: str | None = None) -> Path:
    """Install the session's engine as ``model`` version ``version`` (optionally with another model.py)."""
    root = built.repo / model
    root.mkdir(exist_ok=True)
    (root / "config.pbtxt").write_text(config_pbtxt(model), encoding="utf-8")
    target = root / str(version)
    shutil.copytree(built.result.version_dir, target)
    if model_py is not None:
        (target / "model.py").write_text(model_py, encoding="utf-8")
    return target


@contextlib.asynccontextmanager
async def grounded_gateway(
    home: Path, tansu: str, triton: Triton, triton_client, built: Built, *, model: str, dataset: str, retrieval: dict
) -> AsyncIterator[RunningGateway]:
    """A gateway (its own SQLite database) whose live engine is the session's export installed as ``model``, with
    ``retrieval`` in its manifest and the integration FAQ as the knowledge base of ``dataset``."""
    (home / "datasets" / dataset).mkdir(parents=True)
    (home / "datasets" / dataset / KNOWLEDGE_FILE).write_bytes(to_jsonl(entries_from_rows(FAQ)))
    version_dir = copy_version(built, model, 1)
    meta_path = version_dir / "kefu_engine.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["retrieval"] = retrieval
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    await triton_client.load_model(model)
    settings = gateway_settings(home, f"sqlite+aiosqlite:///{home}/kefu.db", tansu, triton.grpc_url)
    settings = settings.model_copy(update={"triton_model_name": model})
    await asyncio.to_thread(upgrade_database, settings.effective_database_url)
    try:
        async with run_gateway(settings) as gw:
            event = engine_event(f"e-{dataset}", model, 1).model_copy(update={"dataset_id": dataset})
            await record_engine_row(settings, event, version_dir)
            await announce(settings, event)
            await wait_for_state(settings, event.engine_id, "live")
            await asyncio.sleep(settings.rollout_poll_seconds * 3)  # the routing table follows
            yield gw
    finally:
        await triton_client.unload_model(model)


@pytest.fixture(scope="module")
async def triton_client(triton: Triton) -> AsyncIterator[aioclient.InferenceServerClient]:
    client = aioclient.InferenceServerClient(triton.grpc_url)
    await client.load_model(MODEL)
    yield client
    await client.close()


@pytest.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, tansu: str, pg_url: str, triton: Triton, triton_client, built: Built
) -> AsyncIterator[RunningGateway]:
    """A gateway with the session's engine (kefu-chat v1) live, deployed through ``engine.built``."""
    settings = gateway_settings(
        tmp_path_factory.mktemp("gateway"),
        pg_url,
        tansu,
        triton.grpc_url,
        canary_percent=50.0,
        canary_requests=6,
        canary_max_latency_ratio=5.0,
    )
    async with run_gateway(settings) as gw:
        event = engine_event(built.result.engine_id, MODEL, built.result.triton_version)
        await record_engine_row(settings, event, built.result.version_dir)
        await announce(settings, event)
        await wait_for_state(settings, event.engine_id, "live")
        async with httpx.AsyncClient() as client:
            for _ in range(50):  # the gateway's routing table follows within rollout_poll_seconds
                r = await client.get(f"{gw.http}/models", headers=gw.auth("app"))
                if r.json()["data"][0]["engine_id"] == event.engine_id:
                    break
                await asyncio.sleep(0.1)
        yield gw
