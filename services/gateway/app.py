"""Gateway service composition root: customer chat over HTTP (OpenAI-compatible) and gRPC, streamed from Triton;
``engine.built`` → live/canary rollout (judged on evidence: real answers and a shadow replay) →
``deployment.live`` / ``deployment.rolled_back``.

One process serves both APIs: the gRPC server starts and stops inside the FastAPI lifespan.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from libs.common.http import error_body, install_common
from libs.common.runtime import ServiceRuntime
from libs.common.telemetry import configure_logging
from services.gateway import admin_api, handlers, openai_api
from services.gateway.core import Gateway
from services.gateway.grpc_api import GrpcServer
from services.gateway.metrics import REQUESTS
from services.gateway.settings import Settings

CHAT_PATH = "/v1/chat/completions"


class ChatGuard:
    """ASGI middleware for the chat endpoint: 413 for a body declared larger than allowed (before it is read),
    and the requests-by-status counter (the status is only known once the response starts)."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        message = f"request body exceeds {max_body_bytes} bytes"
        self.too_large = json.dumps(error_body("too_large", message)).encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] != CHAT_PATH:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            REQUESTS.labels("http", "unknown", "413").inc()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": self.too_large})
            return

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                stream = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in message["headers"])
                REQUESTS.labels("http", str(stream).lower(), str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime.build("gateway", settings)
        gw = Gateway.build(runtime, settings)
        handlers.register(gw)
        await runtime.start()
        await gw.router.refresh()
        runtime.spawn(gw.router.run(runtime.kick_outbox), name="gateway-rollout")
        runtime.spawn(gw.knowledge.run(settings.rollout_poll_seconds), name="gateway-knowledge")
        runtime.spawn(gw.shadow.run(), name="gateway-shadow-replay")
        grpc_server = GrpcServer(gw)
        await grpc_server.start()
        app.state.gateway = gw
        app.state.runtime = runtime
        try:
            yield
        finally:
            await grpc_server.stop()
            await gw.answer_log.drain()
            await runtime.stop()
            await gw.triton.close()
            await gw.access.aclose()

    app = FastAPI(title="kefu gateway", version="1", lifespan=lifespan)
    install_common(app, service="gateway")
    app.include_router(openai_api.router)
    app.include_router(admin_api.router)
    app.add_middleware(ChatGuard, max_body_bytes=settings.gateway_max_body_bytes)
    return app


def main() -> None:
    settings = Settings()
    configure_logging("gateway", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.bind_host, port=settings.gateway_port, log_level="warning")
