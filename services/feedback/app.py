"""Feedback service composition root: flag/review API, agent console, release batcher, ``feedback.flagged`` nudges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from libs.common.http import install_common
from libs.common.runtime import ServiceRuntime
from libs.common.telemetry import configure_logging
from services.feedback import batcher as batching
from services.feedback import routes, web
from services.feedback.drift_check import DriftScheduler
from services.feedback.errors import FeedbackError
from services.feedback.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime.build("feedback", settings)
        batcher = batching.ReleaseBatcher(runtime, settings)
        batching.register(runtime, batcher)
        await runtime.start()
        runtime.spawn(batcher.run(), name="feedback-release-batcher")
        drift = DriftScheduler(runtime.sessions, runtime.artifacts, settings, runtime.kick_outbox)
        runtime.spawn(drift.run(), name="feedback-drift-check")
        app.state.runtime, app.state.batcher, app.state.drift = runtime, batcher, drift
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="kefu feedback", version="1", lifespan=lifespan)
    install_common(app, service="feedback")
    app.add_exception_handler(FeedbackError, routes.domain_error)
    app.include_router(routes.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    return app


def main() -> None:
    settings = Settings()
    configure_logging("feedback", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.bind_host, port=settings.feedback_port, log_level="warning")
