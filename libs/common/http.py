"""HTTP conventions shared by every service: one error shape, health and Prometheus endpoints.

Every error answer of every API is ``ErrorBody`` — ``{"error": {"code", "message"}}`` — whatever raised it: an
``ApiError`` from a route, an ``AuthError`` (401/403), FastAPI's validation (400, not its default 422), an unknown
path (404/405) or an unexpected exception (500). It is also what OpenAI's SDKs parse (``error.message``,
``error.code``), so the OpenAI-compatible endpoints use it too. Routes declare theirs with ``error_responses``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.common.auth import AuthError, Unauthenticated
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


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable and machine-readable, e.g. invalid_request, forbidden, rate_limited.")
    message: str = Field(description="For people: what is wrong (a bad field is named first) and what to do.")


class ErrorBody(BaseModel):
    """The body of every error answer (and of the error event of a chat stream)."""

    error: ErrorDetail


def error_body(code: str, message: str) -> dict:
    return ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump()


#: What each status means wherever it is declared; a route adds its own wording where it says more.
STATUS_MEANINGS = {
    400: "Invalid request: the message names the field or parameter",
    401: "No API key, or an unknown or revoked one (WWW-Authenticate: Bearer)",
    403: "The key's role may not make this call",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Request too large",
    422: "Well-formed but cannot be processed",
    429: "Rate limit exceeded (Retry-After says when to retry)",
    500: "Unexpected server error (the service log has the details)",
    502: "The model server answered wrongly",
    503: "No engine available or the model server is unreachable (Retry-After)",
}
#: Every route can answer these: its body, path and query are validated (400); a failure nobody foresaw is a 500.
ALWAYS = (400, 500)


def error_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status (optionally ``(status, description)``) with ``ErrorBody`` as its
    schema, plus 400 and 500, plus "4XX" for the rest (an unknown path or method). Declaring 4XX also stops FastAPI
    from documenting its 422 ``HTTPValidationError``, which these APIs never send."""
    responses: dict[int | str, dict[str, Any]] = {}
    for item in (*ALWAYS, *statuses):
        status, description = item if isinstance(item, tuple) else (item, STATUS_MEANINGS[item])
        responses[status] = {"model": ErrorBody, "description": description}
    responses["4XX"] = {"model": ErrorBody, "description": "Any other client error, in the same shape"}
    return responses


def install_common(app: FastAPI, *, service: str) -> None:
    """Error shape for every failure path, plus ``/healthz`` and ``/metrics``; server spans when tracing is on."""
    if configure_tracing(service):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,metrics")

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(AuthError)
    async def _auth_error(_req: Request, exc: AuthError) -> JSONResponse:
        if isinstance(exc, Unauthenticated):
            return JSONResponse(error_body("unauthenticated", str(exc)), 401, headers={"WWW-Authenticate": "Bearer"})
        return JSONResponse(error_body("forbidden", str(exc)), status_code=403)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(error_body("invalid_request", f"{where}: {first.get('msg')}".strip(": ")), status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, _exc: Exception) -> JSONResponse:
        # Starlette's outermost middleware calls this, then re-raises, so the traceback is still logged; the client
        # gets the one shape and no internals (an exception's text can hold paths or data).
        return JSONResponse(error_body("internal", "internal server error; see the service log"), status_code=500)

    @app.get("/healthz", include_in_schema=False)
    async def _health() -> dict:
        return {"service": service, "status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def _ready() -> JSONResponse:
        # Live (healthz) is not ready: a service still warming up (importing torch, building the base model) would
        # make the first job wait for it. A service that warms up sets app.state.ready False, then True.
        ready = getattr(app.state, "ready", True)
        body = {"service": service, "status": "ready" if ready else "warming up"}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)
