"""gRPC API ``kefu.gateway.v1.ChatService`` (grpc.aio), served from the gateway process beside the HTTP API.

Same rules as HTTP: ``authorization: Bearer <key>`` metadata, role app or admin, the per-key rate limit, and the
errors as status codes (``GatewayError.grpc_code``). The answer id is also sent as ``x-kefu-answer-id`` initial
metadata. The request's conversation (id + earlier turns), stop strings, sampling and log-probability knobs
follow the OpenAI API's rules (``services.gateway.params``, ``services.gateway.conversation``). Standard health
checking (``grpc.health.v1``) reports SERVING, and NOT_SERVING during shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from libs.common.auth import CHAT_ROLES
from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc
from services.gateway.answer_stream import AnswerStream
from services.gateway.conversation import conversation
from services.gateway.core import Gateway
from services.gateway.errors import GatewayError
from services.gateway.metrics import REQUESTS
from services.gateway.params import logprobs, sampling, stop_strings
from services.gateway.routing import Target

log = logging.getLogger("kefu.gateway.grpc")
SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


def _logprobs(items: list[dict] | None) -> list[chat_pb2.TokenLogprob] | None:
    """OpenAI ``logprobs.content`` items as protobuf messages (None: not asked)."""
    if items is None:
        return None

    def one(item: dict) -> chat_pb2.TokenLogprob:
        return chat_pb2.TokenLogprob(token=item["token"], logprob=item["logprob"], bytes=bytes(item["bytes"]))

    out = []
    for item in items:
        token = one(item)
        token.top_logprobs.extend(one(top) for top in item.get("top_logprobs", ()))
        out.append(token)
    return out


async def _send_headers(
    context: grpc.aio.ServicerContext, answer_id: str, target: Target, conversation_id: str
) -> None:
    try:
        await context.send_initial_metadata(
            (
                ("x-kefu-answer-id", answer_id),
                ("x-kefu-engine-id", target.engine_id),
                ("x-kefu-conversation-id", conversation_id),
            )
        )
    except Exception:  # the call ended first (the answer failed): its status says why
        log.debug("initial metadata not sent for answer %s", answer_id, exc_info=True)


def _usage(answer: AnswerStream) -> chat_pb2.Usage:
    return chat_pb2.Usage(
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        total_tokens=answer.prompt_tokens + answer.completion_tokens,
    )


class ChatService(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def _start(self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext) -> AnswerStream:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        principal = await self.gw.access.authorize(metadata.get("authorization"), CHAT_ROLES)
        budget = request.max_tokens if request.HasField("max_tokens") and request.max_tokens != 0 else None
        sampled = sampling(
            temperature=request.temperature if request.HasField("temperature") else None,
            top_p=request.top_p if request.HasField("top_p") else None,
            seed=request.seed if request.HasField("seed") else None,
        )
        top_logprobs = logprobs(
            request.logprobs if request.HasField("logprobs") else None,
            request.top_logprobs if request.HasField("top_logprobs") else None,
        )
        stop = stop_strings(list(request.stop))
        chat = conversation(request.conversation_id, [(t.role, t.content) for t in request.history])
        sent: list[asyncio.Task] = []

        def opened(answer_id: str, target: Target) -> None:
            # Sending metadata is a round through grpc's completion queue (~0.3 ms here): done while Triton
            # prefills, it no longer delays the first token. A gRPC error status can still follow headers.
            sent.append(asyncio.ensure_future(_send_headers(context, answer_id, target, chat.conversation_id)))

        answer = await self.gw.answerer.start(
            request.question, budget, principal, chat=chat, stop=stop, sampling=sampled, logprobs=top_logprobs,
            opened=opened,
        )  # fmt: skip
        if sent:
            await sent[0]  # done by now, as a rule: then this does not even yield to the event loop
        else:  # a canary's answer: its headers could not go out before the live engine might replace it
            await _send_headers(context, answer.answer_id, answer.target, answer.conversation_id)
        return answer

    @staticmethod
    async def _fail(context: grpc.aio.ServicerContext, exc: GatewayError, stream: bool) -> None:
        REQUESTS.labels("grpc", str(stream).lower(), exc.grpc_code.name).inc()
        if exc.headers and "Retry-After" in exc.headers:
            context.set_trailing_metadata((("retry-after", exc.headers["Retry-After"]),))
        await context.abort(exc.grpc_code, exc.message)

    async def Chat(self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext) -> chat_pb2.ChatResponse:
        try:
            answer = await self._start(request, context)
            async for _delta in answer:
                pass
        except GatewayError as exc:
            await self._fail(context, exc, False)
        REQUESTS.labels("grpc", "false", "OK").inc()
        return chat_pb2.ChatResponse(
            answer_id=answer.answer_id,
            answer=answer.text,
            finish_reason=answer.finish_reason,
            usage=_usage(answer),
            engine_id=answer.target.engine_id,
            model=answer.target.triton_model,
            entry_ids=answer.entry_ids,
            handoff=answer.handoff,
            conversation_id=answer.conversation_id,
            logprobs=_logprobs(answer.logprobs),
            verbatim=answer.verbatim,
        )

    async def ChatStream(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        try:
            answer = await self._start(request, context)
            async for delta in answer:
                last = bool(delta.finish_reason)
                if delta.text or last or delta.logprobs:
                    yield chat_pb2.ChatStreamResponse(
                        answer_id=answer.answer_id,
                        delta=delta.text,
                        finish_reason=delta.finish_reason,
                        usage=_usage(answer) if last else None,
                        engine_id=answer.target.engine_id,
                        model=answer.target.triton_model,
                        entry_ids=answer.entry_ids if last else None,
                        handoff=answer.handoff if last else False,
                        conversation_id=answer.conversation_id,
                        logprobs=_logprobs(delta.logprobs),
                        verbatim=answer.verbatim if last else False,
                    )
        except GatewayError as exc:
            await self._fail(context, exc, True)
        REQUESTS.labels("grpc", "true", "OK").inc()


class _Malformed:
    def __init__(self, exc: Exception) -> None:
        self.message = f"malformed request message: {type(exc).__name__}: {exc}"


class RejectMalformed(grpc.aio.ServerInterceptor):
    """Answer undecodable request bytes with INVALID_ARGUMENT (grpc.aio's own answer is UNKNOWN, which reads as a
    server bug). Decoding moves into the handler, where a failure can be reported properly."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer

        def lenient(raw: bytes) -> object:
            try:
                return parse(raw)
            except Exception as exc:  # noqa: BLE001 - any decoding failure is the client's
                return _Malformed(exc)

        if handler.response_streaming:
            behavior = handler.unary_stream

            async def stream(request, context):
                if isinstance(request, _Malformed):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                async for item in behavior(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=lenient, response_serializer=handler.response_serializer
            )
        behavior = handler.unary_unary

        async def unary(request, context):
            if isinstance(request, _Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=lenient, response_serializer=handler.response_serializer
        )


class GrpcServer:
    """The grpc.aio server of the gateway: ChatService + health, graceful stop (in-flight calls may finish)."""

    def __init__(self, gw: Gateway) -> None:
        settings = gw.settings
        self.grace = settings.gateway_grace_seconds
        self.server = grpc.aio.server(
            interceptors=[RejectMalformed()],
            options=[
                ("grpc.max_receive_message_length", settings.gateway_max_body_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        chat_pb2_grpc.add_ChatServiceServicer_to_server(ChatService(gw), self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = f"{settings.bind_host}:{settings.gateway_grpc_port}"
        if self.server.add_insecure_port(self.address) == 0:
            raise OSError(f"gRPC port {self.address} is not available")

    async def start(self) -> None:
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC ChatService on %s", self.address)

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.grace)
