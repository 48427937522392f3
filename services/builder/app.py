"""Builder service composition root: ``model.trained`` → ONNX engine + gate → Triton → ``engine.built``."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from libs.common.http import install_common
from libs.common.jobs import recover_interrupted, run_worker, runner_name
from libs.common.runtime import ServiceRuntime
from libs.common.telemetry import configure_logging
from services.builder import handlers
from services.builder.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime.build("builder", settings)
        wake = asyncio.Event()
        handlers.register(runtime, wake)
        await runtime.start()
        await recover_interrupted(runtime.sessions, handlers.JOB_KIND, max_attempts=settings.builder_max_attempts)
        app.state.ready = False  # /readyz: 503 until torch and the ONNX exporter are imported

        def warm_up() -> None:
            importlib.import_module("services.builder.build")
            app.state.ready = True

        runtime.spawn(
            run_worker(
                runtime.sessions,
                handlers.JOB_KIND,
                lambda job: handlers.run_build(runtime, settings, job),
                wake=wake,
                owner=runner_name("builder"),
                lease_seconds=settings.job_lease_seconds,
                max_attempts=settings.builder_max_attempts,
                warm_up=warm_up,
            ),
            name="builder-worker",
        )
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="kefu builder", version="1", lifespan=lifespan)
    install_common(app, service="builder")
    return app


def main() -> None:
    settings = Settings()
    configure_logging("builder", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.bind_host, port=settings.builder_port, log_level="warning")
