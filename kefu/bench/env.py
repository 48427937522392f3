"""The serving environment the decode and gateway benchmarks measure, built from the pieces the services and tests
use: the tiny offline base (``build_offline_base``), one fp32 engine (``services.builder.build``) in a temp
``KEFU_HOME``, the tritonserver binary (``triton_command``), Tansu and the gateway as its own process (``kefu serve
gateway``, so the client's event loop never shares a GIL with the server it measures). Everything lives in a
temporary directory and on free 127.0.0.1 ports, and is torn down on exit: a run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from kefu.bench import MAX_TOKENS, MODEL_NAME, free_port, sample_rows


@dataclass(frozen=True)
class BenchEnv:
    home: Path
    model_dir: Path
    triton_url: str
    gateway_grpc: str
    gateway_http: str  # base URL incl. /v1
    key: str
    questions: list[str]


def sample_questions() -> list[str]:
    return [r["question"] for r in sample_rows()]


def _write_dataset(path: Path) -> Path:
    rows = sample_rows()
    path.mkdir(parents=True, exist_ok=True)
    as_rows = [{"instruction": r["question"], "input": "", "output": r["answer"]} for r in rows]
    for name, part in (("eval.jsonl", as_rows[:4]), ("train.jsonl", as_rows[4:12])):
        (path / name).write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in part), encoding="utf-8")
    return path


def build_model_and_engine(home: Path) -> tuple[Path, Path]:
    """The tiny offline base with the manifest the builder needs, and one fp32 engine in a Triton repository."""
    from transformers import AutoTokenizer

    from libs.common.prompting import chat_template_sha256
    from services.builder.build import build
    from services.trainer.base_model import build_offline_base

    model_dir = build_offline_base(home / "models" / "bench", seed=0)
    meta = {
        "model_id": "sha-bench-model",
        "dataset_id": "sha-bench-dataset",
        "chat_template_sha256": chat_template_sha256(AutoTokenizer.from_pretrained(model_dir)),
        "max_length": MAX_TOKENS,
    }
    (model_dir / "kefu_model.json").write_text(json.dumps(meta), encoding="utf-8")
    repo = home / "triton" / "repository"
    build(model_dir, repo, precision="fp32", dataset_dir=_write_dataset(home / "datasets" / "bench"),
          model_name=MODEL_NAME, max_prompts_per_split=4)  # fmt: skip
    return model_dir, repo


@contextlib.asynccontextmanager
async def _process(argv: list[str], env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _deploy(env: dict[str, str], kafka: str, engine_id: str) -> str:
    """Announce the engine the real way (``engine.built`` on the broker) and return an app-role API key."""
    from libs.common.apikeys import create_key
    from libs.common.broker import make_broker, publish_event
    from libs.common.db import open_database
    from libs.common.events import EngineBuilt
    from libs.common.tables import Engine
    from services.gateway.settings import Settings

    settings = Settings(home=Path(env["KEFU_HOME"]), kafka_bootstrap=kafka)
    event = EngineBuilt(
        engine_id=engine_id, model_id="sha-bench-model", dataset_id="sha-bench-dataset", triton_model=MODEL_NAME,
        triton_version=1, precision="fp32", quality={"agreement": 1.0}, passed_gate=True)  # fmt: skip
    version_uri = (settings.home / "triton" / "repository" / MODEL_NAME / "1").as_uri()
    async with open_database(settings, migrate=False) as sessions, sessions() as s, s.begin():
        key = (await create_key(s, "app", name="bench"))[1]
        # The builder's record of the engine: the gateway deploys only an engine.built its record backs.
        s.add(Engine(
            engine_id=engine_id, model_id=event.model_id, dataset_id=event.dataset_id, triton_model=MODEL_NAME,
            triton_version=1, precision="fp32", quality=event.quality, passed_gate=True, uri=version_uri))  # fmt: skip
    broker = make_broker(settings, service="bench")
    await broker.start()
    try:
        await publish_event(broker, event)
    finally:
        await broker.stop()
    return key


async def _wait_live(http: str, key: str, engine_id: str, proc: asyncio.subprocess.Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError, KeyError, IndexError, ValueError):
                r = await client.get(f"{http}/models", headers={"Authorization": f"Bearer {key}"})
                if r.json()["data"][0]["engine_id"] == engine_id:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"engine {engine_id} not live in the gateway after {timeout:.0f}s")


@contextlib.asynccontextmanager
async def bench_environment(home: Path | None = None, say: Callable[[str], None] = print) -> AsyncIterator[BenchEnv]:
    """Model + engine + Tansu + Triton + gateway, all on free 127.0.0.1 ports, torn down on exit."""
    from kefu.tansu import create_topics, tansu_command, wait_port
    from libs.common.db import upgrade_database
    from libs.common.events import all_topic_names
    from libs.common.settings import KefuSettings
    from services.builder.triton_server import triton_command, wait_ready

    with contextlib.ExitStack() as cleanup:
        if home is None:
            home = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="kefu-bench-")))
        (home / "logs").mkdir(parents=True, exist_ok=True)
        say("bench: building the tiny base and an fp32 engine")
        model_dir, repo = await asyncio.to_thread(build_model_and_engine, home)
        engine_id = json.loads((repo / MODEL_NAME / "1" / "kefu_engine.json").read_text())["engine_id"]
        kafka_port, grpc_port, http_port, gw_grpc = free_port(), free_port(), free_port(), free_port()
        argv, tenv = triton_command(repo, free_port(), grpc_port, free_port(), home / "triton")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
        env.update(
            KEFU_HOME=str(home), KEFU_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka_port}", KEFU_TRITON_GRPC_PORT=str(grpc_port),
            KEFU_GATEWAY_PORT=str(http_port), KEFU_GATEWAY_GRPC_PORT=str(gw_grpc), KEFU_MIGRATE_ON_START="false",
            KEFU_KAFKA_SESSION_TIMEOUT_MS="2000", KEFU_KAFKA_HEARTBEAT_INTERVAL_MS="500",
            # The bench is one client hammering one key: the per-key limit would measure the limiter, not the path.
            KEFU_GATEWAY_RATE_LIMIT_PER_MINUTE="1000000", KEFU_ROLLOUT_POLL_SECONDS="0.2", PYTHONUNBUFFERED="1",
        )  # fmt: skip
        await asyncio.to_thread(upgrade_database, KefuSettings(home=home).effective_database_url)
        async with contextlib.AsyncExitStack() as procs:
            await procs.enter_async_context(_process(tansu_command(kafka_port), env, home / "logs" / "kafka.log"))
            await wait_port("127.0.0.1", kafka_port)
            await create_topics(f"127.0.0.1:{kafka_port}", all_topic_names())
            await procs.enter_async_context(_process(argv, tenv, home / "logs" / "triton.log"))
            triton_url = f"127.0.0.1:{grpc_port}"
            await wait_ready(triton_url, timeout=90)
            await _load(triton_url)
            gw = await procs.enter_async_context(
                _process([sys.executable, "-m", "kefu", "serve", "gateway"], env, home / "logs" / "gateway.log")
            )
            http = f"http://127.0.0.1:{http_port}/v1"
            key = await _deploy(env, f"127.0.0.1:{kafka_port}", engine_id)
            await _wait_live(http, key, engine_id, gw, timeout=90)
            say(f"bench: engine {engine_id} live behind the gateway ({home})")
            yield BenchEnv(home, model_dir, triton_url, f"127.0.0.1:{gw_grpc}", http, key, sample_questions())


async def _load(triton_url: str) -> None:
    import tritonclient.grpc.aio as aioclient

    client = aioclient.InferenceServerClient(triton_url)
    try:
        await client.load_model(MODEL_NAME)
    finally:
        await client.close()
