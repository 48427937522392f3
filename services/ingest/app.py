"""Ingest service composition root: HTTP upload → dataset version → ``dataset.ready``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from libs.common.http import install_common
from libs.common.runtime import ServiceRuntime
from libs.common.telemetry import configure_logging
from services.ingest.limits import FORM_OVERHEAD_BYTES, BodySizeLimit
from services.ingest.routes import router
from services.ingest.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime.build("ingest", settings)
        await runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="kefu ingest", version="1", lifespan=lifespan)
    install_common(app, service="ingest")
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.ingest_max_upload_bytes + FORM_OVERHEAD_BYTES,
        setting="KEFU_INGEST_MAX_UPLOAD_BYTES",
    )
    app.include_router(router)
    return app


def main() -> None:
    settings = Settings()
    configure_logging("ingest", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.bind_host, port=settings.ingest_port, log_level="warning")
