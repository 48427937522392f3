"""OpenAI-compatible HTTP API: ``POST /v1/chat/completions`` (whole or SSE-streamed) and ``GET /v1/models``.

The official OpenAI SDKs work unchanged with ``base_url=http://HOST:8080/v1`` and an kefu API key. The question
is the LAST user message; the user and assistant messages before it are the conversation (the previous user turn
steers retrieval, ``services.gateway.conversation``). The engine builds the chat prompt itself with the template
it was trained with, so system messages are not used. Every parameter is honoured or refused with a 400 naming it
(README, API): unknown fields too, so a client never gets an answer that silently ignored what it asked for.
The answer id is the response ``id`` and the ``X-Kefu-Answer-Id`` header; quote it to flag the answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from libs.common.http import Text, error_responses
from libs.common.triton_stream import Sampling
from services.gateway.answer_stream import AnswerStream
from services.gateway.conversation import Conversation, conversation
from services.gateway.deps import ChatCaller, GatewayDep
from services.gateway.errors import GatewayError, invalid, unsupported
from services.gateway.params import logprobs, sampling, stop_strings

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


#: Accepted and without effect on the answer (README lists them): bookkeeping fields of OpenAI's API.
NO_EFFECT = frozenset({"user", "store", "service_tier"})
#: OpenAI fields for features this product does not have: present (not null) → 400 naming the field.
REFUSED = {
    "tools": "tool calling is not supported",
    "tool_choice": "tool calling is not supported",
    "parallel_tool_calls": "tool calling is not supported",
    "functions": "function calling is not supported",
    "function_call": "function calling is not supported",
    "audio": "audio output is not supported",
    "logit_bias": "logit_bias is not supported",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "the model does not reason in steps",
    "web_search_options": "web search is not supported",
}


class ChatCompletionRequest(BaseModel):
    # Unknown fields are kept (``model_extra``) so that ``refuse_unsupported`` can name them instead of ignoring.
    model_config = ConfigDict(extra="allow")
    model: Text = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int | None = None
    stop: Text | list[Text] | None = None
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    metadata: dict[str, str] | None = None

    def refuse_unsupported(self) -> None:
        """400 naming the first parameter asked for that the product does not do; never a silent greedy answer."""
        extra = self.model_extra or {}
        for name, why in REFUSED.items():
            if extra.get(name) is not None:
                raise unsupported(name, why)
        for name, value in extra.items():
            if value is not None and name not in NO_EFFECT:  # null is "not asked for", as OpenAI reads it
                raise unsupported(name, "unknown parameter")
        if self.n not in (None, 1):
            raise unsupported("n", "only one choice per request is supported")
        if self.response_format is not None and self.response_format.get("type") != "text":
            raise unsupported("response_format", "only text answers are supported (type 'text')")
        if self.modalities is not None and set(self.modalities) - {"text"}:
            raise unsupported("modalities", "only text output is supported")

    def sampling(self) -> Sampling | None:
        return sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
        )

    def top_logprobs_count(self) -> int | None:
        """None: no log-probabilities; else the alternatives per token to return."""
        return logprobs(self.logprobs, self.top_logprobs)

    def question(self) -> str:
        return self.messages[self._question_at()].text()

    def _question_at(self) -> int:
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].role == "user":
                return i
        raise invalid("messages: no user message")

    def conversation(self, header_id: str | None) -> Conversation:
        """The turns before the question (system/developer messages are not used: the engine has its own prompt);
        the id from ``metadata.conversation_id`` or the ``X-Kefu-Conversation-Id`` header, else a new one."""
        for i, message in enumerate(self.messages):
            if message.role in ("tool", "function"):
                raise unsupported(f"messages[{i}].role", f"{message.role!r} messages need tool calling")
        if self.messages[-1].role == "assistant":  # would ask to continue that message: not what is answered
            raise unsupported("messages", "the last message must be the user's question, not an assistant prefix")
        turns = [(m.role, m.text()) for m in self.messages[: self._question_at()] if m.role in ("user", "assistant")]
        cid = (self.metadata or {}).get("conversation_id") or header_id
        return conversation(cid, turns)


def _headers(answer: AnswerStream) -> dict[str, str]:
    return {
        "X-Kefu-Answer-Id": answer.answer_id,
        "X-Kefu-Engine-Id": answer.target.engine_id,
        "X-Kefu-Conversation-Id": answer.conversation_id,
    }


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
            if delta.text or "role" in piece or delta.logprobs:
                choice: dict[str, Any] = {"index": 0, "delta": piece, "finish_reason": None}
                if delta.logprobs is not None:
                    choice["logprobs"] = {"content": delta.logprobs, "refusal": None}
                yield _sse({**base, "choices": [choice]})
    except GatewayError as exc:
        # Headers (200) are gone already: an error object in the stream is what OpenAI clients raise on.
        yield _sse({"error": {"code": exc.code, "message": exc.message}})
        return
    final = {"index": 0, "delta": {}, "finish_reason": answer.finish_reason}
    yield _sse({**base, "choices": [final], "kefu": answer.grounding()})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": _usage(answer)})
    yield "data: [DONE]\n\n"


@router.post(
    "/chat/completions",
    response_model=None,
    responses=error_responses(
        (400, "A parameter refused or invalid; the message starts with its name (OpenAI SDKs: BadRequestError)"),
        401,
        403,
        (404, "model_not_found: see GET /v1/models"),
        (413, "too_large: the body or the prompt is over the limit"),
        429,
        502,
        503,
    ),
)
async def chat_completions(
    body: ChatCompletionRequest,
    gw: GatewayDep,
    principal: ChatCaller,
    x_kefu_conversation_id: Annotated[str | None, Header(description="groups the answers of one chat")] = None,
) -> JSONResponse | StreamingResponse:
    """Answer the last user message; ``stream: true`` sends OpenAI ``chat.completion.chunk`` server-sent events."""
    body.refuse_unsupported()
    stop, sampled, top_logprobs = stop_strings(body.stop), body.sampling(), body.top_logprobs_count()
    chat = body.conversation(x_kefu_conversation_id)
    if body.model not in gw.router.models() and body.model != gw.settings.triton_model_name:
        raise GatewayError(404, "model_not_found", f"model {body.model!r} does not exist; see GET /v1/models")
    budget = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    answer = await gw.answerer.start(
        body.question(), budget, principal, chat=chat, stop=stop, sampling=sampled, logprobs=top_logprobs
    )
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
                    "logprobs": None if answer.logprobs is None else {"content": answer.logprobs, "refusal": None},
                }
            ],
            "usage": _usage(answer),
            # Not in OpenAI's schema; its SDKs keep unknown fields (``completion.model_extra["kefu"]``).
            "kefu": answer.grounding(),
        },
        headers=_headers(answer),
    )


@router.get("/models", responses=error_responses(401, 403, 429))
async def list_models(gw: GatewayDep, _caller: ChatCaller) -> dict[str, Any]:
    """The model names chat requests may name (the one Triton model, whichever engine version serves it)."""
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
