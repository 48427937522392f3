"""OpenAI-compatible HTTP API: ``POST /v1/chat/completions`` (whole or SSE-streamed) and ``GET /v1/models``.

The official OpenAI SDKs work unchanged with ``base_url=http://HOST:8080/v1`` and an kefu API key. The question
is the LAST user message: the engine builds the chat prompt itself with the template it was trained with, so
system messages and earlier turns are ignored, as are sampling parameters (decoding is greedy). The answer id is
the response ``id`` and the ``X-Kefu-Answer-Id`` header; quote it to flag the answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from libs.common.http import Text
from services.gateway.access import CHAT, Principal
from services.gateway.answering import AnswerStream
from services.gateway.core import Gateway
from services.gateway.errors import GatewayError, invalid

router = APIRouter(prefix="/v1")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: Text | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Unknown OpenAI fields (temperature, top_p, user, …) are accepted and ignored: decoding is greedy.
    model_config = ConfigDict(extra="ignore")
    model: Text = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int = 1

    def question(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        raise invalid("messages: no user message")


async def authorized(request: Request, authorization: str | None, roles: frozenset[str]) -> tuple[Gateway, Principal]:
    gw: Gateway = request.app.state.gateway
    return gw, await gw.access.authorize(authorization, roles)


def _headers(answer: AnswerStream) -> dict[str, str]:
    return {"X-Kefu-Answer-Id": answer.answer_id, "X-Kefu-Engine-Id": answer.target.engine_id}


def _usage(answer: AnswerStream) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _events(answer: AnswerStream, model: str, include_usage: bool) -> AsyncIterator[str]:
    base = {
        "id": answer.answer_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": answer.target.engine_id,
    }
    first = True
    try:
        async for delta in answer:
            piece: dict[str, Any] = {"content": delta.text}
            if first:
                piece["role"], first = "assistant", False
            if delta.text or "role" in piece:
                yield _sse({**base, "choices": [{"index": 0, "delta": piece, "finish_reason": None}]})
    except GatewayError as exc:
        # Headers (200) are gone already: an error object in the stream is what OpenAI clients raise on.
        yield _sse({"error": {"code": exc.code, "message": exc.message}})
        return
    final = {"index": 0, "delta": {}, "finish_reason": answer.finish_reason}
    yield _sse({**base, "choices": [final], "kefu": answer.grounding()})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": _usage(answer)})
    yield "data: [DONE]\n\n"


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <kefu API key>")] = None,
) -> JSONResponse | StreamingResponse:
    """Answer the last user message; ``stream: true`` sends OpenAI ``chat.completion.chunk`` server-sent events."""
    gw, principal = await authorized(request, authorization, CHAT)
    if body.n != 1:
        raise invalid("n: only one choice per request is supported")
    if body.model not in gw.router.models() and body.model != gw.settings.triton_model_name:
        raise GatewayError(404, "model_not_found", f"model {body.model!r} does not exist; see GET /v1/models")
    budget = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    answer = await gw.answerer.start(body.question(), budget, principal)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _events(answer, body.model, include_usage),
            media_type="text/event-stream",
            headers={**_headers(answer), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    async for _delta in answer:
        pass
    return JSONResponse(
        {
            "id": answer.answer_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "system_fingerprint": answer.target.engine_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": _usage(answer),
            # Not in OpenAI's schema; its SDKs keep unknown fields (``completion.model_extra["kefu"]``).
            "kefu": answer.grounding(),
        },
        headers=_headers(answer),
    )


@router.get("/models")
async def list_models(
    request: Request, authorization: Annotated[str | None, Header(description="Bearer <kefu API key>")] = None
) -> dict[str, Any]:
    """The model names chat requests may name (the one Triton model, whichever engine version serves it)."""
    gw, _principal = await authorized(request, authorization, CHAT)
    live = gw.router.live
    names = gw.router.models() or [gw.settings.triton_model_name]
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "kefu",
                "engine_id": live.engine_id if live else None,
            }
            for name in names
        ],
    }
