"""Builder handlers: ``model.trained`` → queued build job → engine + gate → loaded into Triton → ``engine.built``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from typing import TYPE_CHECKING

import tritonclient.grpc.aio as aioclient
from prometheus_client import Counter, Gauge, Histogram

from libs.common.broker import consumer_options
from libs.common.events import DeploymentRolledBack, ModelTrained, Topic
from libs.common.jobs import add_job, finish_job
from libs.common.outbox import claim_event
from libs.common.runtime import ServiceRuntime
from libs.common.tables import Engine, Job
from libs.common.telemetry import resumed_trace, trace_headers
from libs.common.triton_stream import stream_answer
from services.builder.retention import live_version, park_superseded, restore
from services.builder.settings import Settings

if TYPE_CHECKING:  # torch/onnx: imported by the worker's warm-up, not at start
    from services.builder.build import BuildResult

log = logging.getLogger("kefu.builder")
JOB_KIND = "build"
SMOKE_QUESTION = "你好"

BUILD_SECONDS = Histogram(
    "kefu_builder_build_seconds", "Export + quality gate of one build.", buckets=(5, 15, 30, 60, 120, 300, 600, 1800)
)
GATE_AGREEMENT = Gauge("kefu_builder_gate_agreement", "Engine/trained-model greedy agreement of the last passed build.")
BUILDS = Counter(
    "kefu_builder_builds", "Build outcomes: passed, build_error (gate or model), smoke_failed.", ["result"]
)


def register(rt: ServiceRuntime[Settings], wake: asyncio.Event) -> None:
    @rt.broker.subscriber(Topic.MODEL_TRAINED.value, **consumer_options(rt.settings, group="builder"))
    async def on_model_trained(event: ModelTrained) -> None:
        async with rt.sessions() as session, session.begin():
            if not await claim_event(session, "builder", event.event_id):
                return
            # The job runs outside this consumer's span: its payload carries the trace on to engine.built.
            payload = {**event.model_dump(mode="json"), "trace": trace_headers()}
            queued = await add_job(session, JOB_KIND, event.model_id, payload)
        if queued:
            log.info("queued build of model %s", event.model_id)
            wake.set()

    @rt.broker.subscriber(Topic.DEPLOYMENT_ROLLED_BACK.value, **consumer_options(rt.settings, group="builder"))
    async def on_rolled_back(event: DeploymentRolledBack) -> None:
        async with rt.sessions() as session, session.begin():
            if not await claim_event(session, "builder-rollback", event.event_id):
                return
            engine = await session.get(Engine, event.engine_id)
        if engine is not None:
            await retire_version(rt.settings, engine.triton_model, engine.triton_version)


async def retire_version(settings: Settings, name: str, version: int) -> None:
    """Take a rolled-back version out of the repository and reload, so it no longer holds one of the two version
    slots Triton keeps loaded (otherwise the next build would evict the live version instead)."""
    version_dir = settings.repository / name / str(version)
    if not version_dir.is_dir():
        return
    parked = settings.repository / ".rolled_back" / f"{name}-{version}"
    parked.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(parked, ignore_errors=True)
    version_dir.rename(parked)
    client = aioclient.InferenceServerClient(settings.triton_grpc_url)
    try:
        await client.load_model(name)
    finally:
        await client.close()
    log.info("retired rolled-back %s v%s to %s", name, version, parked)


async def load_and_smoke_test(settings: Settings, name: str, version: int) -> str:
    """Load the new version (Triton keeps serving the old one until it is ready) and stream one answer from it."""
    client = aioclient.InferenceServerClient(settings.triton_grpc_url)
    try:
        await client.load_model(name)
        text = ""
        async for delta in stream_answer(client, name, SMOKE_QUESTION, max_tokens=16, version=str(version)):
            text += delta.text
            if delta.finish_reason and delta.token_count == 0:
                raise RuntimeError(f"smoke test: {name} v{version} produced no tokens")
        return text
    finally:
        await client.close()


async def _reload(settings: Settings, name: str) -> None:
    client = aioclient.InferenceServerClient(settings.triton_grpc_url)
    try:
        await client.load_model(name)
    finally:
        await client.close()


async def load_keeping_live(rt: ServiceRuntime, settings: Settings, result: BuildResult) -> str:
    """Load and smoke-test a new version without ever unloading the live one (services/builder/retention.py);
    on failure the new version leaves the repository and what was parked comes back, then Triton reloads."""
    name, version = result.triton_model, result.triton_version
    live = await live_version(rt.sessions, name)
    parked = await asyncio.to_thread(park_superseded, settings.repository, name, live, version)
    try:
        answer = await load_and_smoke_test(settings, name, version)
    except Exception:
        shutil.rmtree(result.version_dir, ignore_errors=True)
        restore(parked)
        with contextlib.suppress(Exception):  # best effort: the smoke failure is what the job reports
            await _reload(settings, name)
        raise
    # A canary promoted while this version loaded may be one just parked: it is live now, so it comes back.
    now_live = await live_version(rt.sessions, name)
    if now_live is not None and now_live != live and restore(parked, only={now_live}):
        log.warning("%s v%s became live while v%s loaded: restored and reloaded", name, now_live, version)
        await _reload(settings, name)
    return answer


async def run_build(rt: ServiceRuntime, settings: Settings, job: Job) -> None:
    """Build, gate, load and smoke-test one trained model; record the engine and stage ``engine.built``."""
    with resumed_trace(job.payload.get("trace"), span_name="kefu.builder.build"):
        await _build(rt, settings, job)


async def _build(rt: ServiceRuntime, settings: Settings, job: Job) -> None:
    # torch/onnx imports take seconds: keep them off the start path
    from services.builder.build import build, find_published
    from services.builder.publish import record_engine

    event = ModelTrained.model_validate(job.payload)
    started = time.perf_counter()
    try:
        model_dir = rt.artifacts.resolve_uri(event.uri)
        dataset_dir = rt.artifacts.path("datasets", event.dataset_id)
        result = await asyncio.to_thread(
            find_published, settings.repository, settings.triton_model_name, event.model_id, settings.builder_precision
        )
        if result is not None:
            log.warning(
                "model %s: reusing v%s (engine %s) that an interrupted attempt already published",
                event.model_id, result.triton_version, result.engine_id,
            )  # fmt: skip
        else:
            result = await asyncio.to_thread(
                build,
                model_dir,
                settings.repository,
                precision=settings.builder_precision,
                dataset_dir=dataset_dir if dataset_dir.is_dir() else None,
                model_name=settings.triton_model_name,
                min_agreement=settings.builder_min_agreement,
                min_regression=settings.builder_min_regression,
                max_quality_drop=settings.builder_max_quality_drop,
                min_exact_match=settings.builder_min_exact_match,
                max_prompts_per_split=settings.builder_max_prompts,
            )
    except Exception as exc:  # BuildError (gate, broken model) or anything unexpected: the job fails loudly
        BUILD_SECONDS.observe(time.perf_counter() - started)
        BUILDS.labels("build_error").inc()
        log.exception("build of model %s failed", event.model_id)
        async with rt.sessions() as session, session.begin():
            await finish_job(session, job.id, owner=job.owner, error=f"{type(exc).__name__}: {exc}"[:4000])
        return
    BUILD_SECONDS.observe(time.perf_counter() - started)
    if isinstance(result.quality.get("agreement"), int | float):
        GATE_AGREEMENT.set(float(result.quality["agreement"]))
    try:
        answer = await load_keeping_live(rt, settings, result)
    except Exception as exc:
        BUILDS.labels("smoke_failed").inc()
        log.exception("engine %s failed its Triton smoke test", result.engine_id)
        async with rt.sessions() as session, session.begin():
            await finish_job(session, job.id, owner=job.owner, error=f"smoke test failed: {exc}"[:4000])
        return
    async with rt.sessions() as session, session.begin():
        # First: a runner whose lease was taken over stops here (LeaseLost) before recording anything.
        await finish_job(
            session, job.id, owner=job.owner, result={"engine_id": result.engine_id, "smoke_answer": answer}
        )
        await record_engine(session, result)
    BUILDS.labels("passed").inc()
    rt.kick_outbox()
    log.info(
        "engine %s live in Triton as %s v%s; smoke answer %r",
        result.engine_id,
        result.triton_model,
        result.triton_version,
        answer,
    )
