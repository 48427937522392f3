"""Trainer handlers: ``dataset.ready`` → a queued training job; the job runner trains, records, announces."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge

from libs.common.broker import consumer_options
from libs.common.events import DatasetReady, ModelFailed, Topic
from libs.common.jobs import add_job, finish_job
from libs.common.outbox import claim_event, enqueue
from libs.common.runtime import ServiceRuntime
from libs.common.tables import Job
from libs.common.telemetry import resumed_trace, trace_headers
from services.trainer.config import TrainConfig
from services.trainer.settings import Settings

if TYPE_CHECKING:  # torch/TRL: imported by the worker's warm-up, not by the consumer
    from services.trainer.sft import TrainResult

log = logging.getLogger("kefu.trainer")
JOB_KIND = "train"

TRAIN_STEP = Gauge("kefu_trainer_step", "Optimizer step of the running training job.")
TRAIN_LOSS = Gauge("kefu_trainer_loss", "Last logged training loss.")
TRAIN_STEPS_PER_SECOND = Gauge("kefu_trainer_steps_per_second", "Optimizer steps per second between log lines.")


def _progress(dataset_id: str) -> Callable[[dict[str, Any]], None]:
    """The training progress callback: a log line and the trainer gauges (throughput from successive calls)."""
    last = {"step": 0.0, "at": time.monotonic()}

    def report(m: dict[str, Any]) -> None:
        log.info("progress %s %s", dataset_id, {k: round(v, 4) for k, v in m.items() if isinstance(v, int | float)})
        step, now = float(m.get("step") or 0), time.monotonic()
        TRAIN_STEP.set(step)
        if isinstance(m.get("loss"), int | float):
            TRAIN_LOSS.set(m["loss"])
        if step > last["step"] and now > last["at"]:
            TRAIN_STEPS_PER_SECOND.set((step - last["step"]) / (now - last["at"]))
        last.update(step=step, at=now)

    return report


def register(rt: ServiceRuntime, wake: asyncio.Event) -> None:
    @rt.broker.subscriber(Topic.DATASET_READY.value, **consumer_options(rt.settings, group="trainer"))
    async def on_dataset_ready(event: DatasetReady) -> None:
        async with rt.sessions() as session, session.begin():
            if not await claim_event(session, "trainer", event.event_id):
                return
            # The job runs outside this consumer's span: its payload carries the trace on to model.trained.
            payload = {**event.model_dump(mode="json"), "trace": trace_headers()}
            queued = await add_job(session, JOB_KIND, event.dataset_id, payload)
        if queued:
            log.info("queued training of %s", event.dataset_id)
            wake.set()
        else:
            log.info("dataset %s was already trained or queued; not training it twice", event.dataset_id)


async def run_training(rt: ServiceRuntime, settings: Settings, job: Job) -> None:
    """Train one queued dataset; success → model.trained; failure or a missed quality gate → model.failed."""
    with resumed_trace(job.payload.get("trace"), span_name="kefu.trainer.train"):
        await _train(rt, settings, job)


async def _train(rt: ServiceRuntime, settings: Settings, job: Job) -> None:
    event = DatasetReady.model_validate(job.payload)
    work = settings.home / "work" / "trainer" / f"job-{job.id}"
    try:
        # Imported by the worker's warm-up already (torch/TRL take seconds); inside the try so that even a broken
        # installation ends as model.failed.
        from services.trainer.base_model import resolve_base_model
        from services.trainer.publish import record_model
        from services.trainer.sft import train_model

        dataset_dir = rt.artifacts.resolve_uri(event.uri)
        if not dataset_dir.is_dir():
            raise FileNotFoundError(f"dataset {event.dataset_id} not found at {dataset_dir}")
        config = TrainConfig.from_yaml(settings.trainer_config) if settings.trainer_config else TrainConfig()
        base = await asyncio.to_thread(resolve_base_model, settings.trainer_base_model, settings.home / "base-models")
        log.info("training %s (job %s, attempt %s) on %s", event.dataset_id, job.id, job.attempts, base)
        result = await asyncio.to_thread(
            train_model,
            dataset_dir,
            work / "model",
            config,
            base=base,
            tracking_uri=settings.tracking_uri(),
            artifact_root=settings.home,
            progress=_progress(event.dataset_id),
        )
    except Exception as exc:  # any training failure becomes model.failed, never a silent loss
        reason = f"{type(exc).__name__}: {exc}"
        log.exception("training %s failed", event.dataset_id)
        async with rt.sessions() as session, session.begin():
            await finish_job(session, job.id, owner=job.owner, error=reason)
            enqueue(session, ModelFailed(dataset_id=event.dataset_id, reason=reason[:2000]))
        rt.kick_outbox()
        return
    if result.missed:
        await _gate_failed(rt, job, event, result)
        shutil.rmtree(work, ignore_errors=True)
        return
    async with rt.sessions() as session, session.begin():
        # First: a runner whose lease was taken over stops here (LeaseLost) before recording anything.
        await finish_job(
            session, job.id, owner=job.owner, result={"model_id": result.model_id, "metrics": result.metrics}
        )
        await record_model(session, rt.artifacts, result)
    rt.kick_outbox()
    shutil.rmtree(work, ignore_errors=True)
    log.info("trained %s → model %s %s", event.dataset_id, result.model_id, result.metrics)


async def _gate_failed(rt: ServiceRuntime, job: Job, event: DatasetReady, result: TrainResult) -> None:
    """The run trained but missed the quality gate: model.failed with its metrics and misses, and no model recorded,
    so the builder never sees it. The job is failed, not retried: the same data would train the same model."""
    from services.trainer.publish import gate_failure

    failure = gate_failure(result, dataset_id=event.dataset_id)
    log.warning(
        "model %s of %s failed the %s (run %s)", result.model_id, event.dataset_id, failure.reason, result.run_id
    )
    async with rt.sessions() as session, session.begin():
        result_doc = {"model_id": result.model_id, "run_id": result.run_id, "metrics": failure.metrics}
        await finish_job(
            session, job.id, owner=job.owner, error=failure.reason, result={**result_doc, "missed": failure.missed}
        )
        enqueue(session, failure)
    rt.kick_outbox()
