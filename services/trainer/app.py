"""Trainer service composition root: ``dataset.ready`` → queued job → TRL fine-tune → ``model.trained``."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from libs.common.http import install_common
from libs.common.jobs import recover_interrupted, run_worker, runner_name
from libs.common.runtime import ServiceRuntime
from libs.common.telemetry import configure_logging
from services.trainer import handlers
from services.trainer.settings import Settings

log = logging.getLogger("kefu.trainer")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime.build("trainer", settings)
        wake = asyncio.Event()
        handlers.register(runtime, wake)
        await runtime.start()
        await recover_interrupted(runtime.sessions, handlers.JOB_KIND, max_attempts=settings.trainer_max_attempts)
        app.state.ready = False  # /readyz: 503 until torch/TRL are imported and the base model is on disk

        def warm_up() -> None:
            importlib.import_module("services.trainer.sft")
            from services.trainer.base_model import resolve_base_model

            try:
                resolve_base_model(settings.trainer_base_model, settings.home / "base-models")
            except Exception:  # a bad base path fails the first job with model.failed naming it; still ready
                log.exception("could not prepare the base model")
            app.state.ready = True

        runtime.spawn(
            run_worker(
                runtime.sessions,
                handlers.JOB_KIND,
                lambda job: handlers.run_training(runtime, settings, job),
                wake=wake,
                owner=runner_name("trainer"),
                lease_seconds=settings.job_lease_seconds,
                max_attempts=settings.trainer_max_attempts,
                warm_up=warm_up,
            ),
            name="trainer-worker",
        )
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="kefu trainer", version="1", lifespan=lifespan)
    install_common(app, service="trainer")
    return app


def main() -> None:
    settings = Settings()
    configure_logging("trainer", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.bind_host, port=settings.trainer_port, log_level="warning")
