"""HTTP conventions shared by every service: one error shape, health and Prometheus endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.common.telemetry import configure_tracing


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000: caught here it is the client's 400, not the database's 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return value


#: A string from a request (body field or path parameter) that can be stored: every API's text inputs use it.
Text = Annotated[str, AfterValidator(_no_nul)]


class ApiError(Exception):
    """Raise from a handler to answer ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def install_common(app: FastAPI, *, service: str) -> None:
    """Error shape for every failure path, plus ``/healthz`` and ``/metrics``; server spans when tracing is on."""
    if configure_tracing(service):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,metrics")

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(error_body("invalid_request", f"{where}: {first.get('msg')}".strip(": ")), status_code=400)

    @app.get("/healthz", include_in_schema=False)
    async def _health() -> dict:
        return {"service": service, "status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)
