"""One answer, end to end: pick the engine, stream it from Triton, time it, log it.

``Answerer.start`` waits for the first token before returning, so a Triton outage or a failing engine becomes a
proper error status (HTTP 503/502, gRPC UNAVAILABLE/INTERNAL) instead of a stream that breaks after its headers.
Iterating the returned ``AnswerStream`` yields the deltas; leaving early (client gone) closes the Triton stream,
which cancels the request inside Triton. The answer row is written by a background task after the stream ended,
whatever the ending, so a disconnect never delays or loses it. Stop strings are cut here, for both APIs: the
stream ends before the first match with ``finish_reason`` "stop", and ending it closes the Triton request early.
A conversation's earlier user turn steers retrieval (``services.gateway.conversation.ground``).

Time to first token is the gateway's figure of merit (``kefu bench``: its overhead over Triton direct), so the work
before the first token is only what the Triton request needs: key check, routing, retrieval. The answer row is
kept as plain values and built into an ORM object after the answer (``AnswerLog``), and an API's response headers
can go out while Triton prefills (``opened``) instead of after the first token.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import tritonclient.grpc.aio as aioclient

from libs.common.auth import Principal
from libs.common.triton_stream import Delta, Sampling, stream_answer
from services.gateway import conversation, metrics
from services.gateway.answer_log import AnswerLog
from services.gateway.answer_stream import TRITON_ERRORS, AnswerStream, fixed_deltas, triton_error
from services.gateway.conversation import Conversation
from services.gateway.errors import GatewayError, invalid
from services.gateway.knowledge import Knowledge
from services.gateway.opening_check import checked
from services.gateway.routing import Router, Target
from services.gateway.settings import Settings

log = logging.getLogger("kefu.gateway.answering")
#: Told (answer id, engine) of the answer that will be served, just before its first token is awaited.
Opened = Callable[[str, Target], None]
__all__ = ["AnswerLog", "AnswerStream", "Answerer", "Opened"]


def new_answer_id() -> str:
    return uuid.uuid4().hex


class Answerer:
    def __init__(
        self,
        client: aioclient.InferenceServerClient,
        router: Router,
        answer_log: AnswerLog,
        settings: Settings,
        knowledge: Knowledge,
    ) -> None:
        self.client, self.router, self.log, self.settings = client, router, answer_log, settings
        self.knowledge = knowledge

    def check(self, question: str, max_tokens: int | None) -> tuple[str, int | None]:
        """Validate a question and budget (400 / 413) before any engine is asked."""
        question = question.strip()
        if not question:
            raise invalid("the question is empty")
        if "\x00" in question:  # gRPC strings may hold it; the answer log (PostgreSQL text) cannot
            raise invalid("the question contains a NUL (U+0000) character")
        limit = self.settings.gateway_max_question_chars
        if len(question) > limit:
            raise GatewayError(413, "too_large", f"question has {len(question)} characters; the limit is {limit}")
        if max_tokens is not None and not 1 <= max_tokens <= self.settings.gateway_max_tokens:
            raise invalid(f"max_tokens must be between 1 and {self.settings.gateway_max_tokens}")
        return question, max_tokens

    async def start(
        self,
        question: str,
        max_tokens: int | None,
        principal: Principal,
        *,
        chat: Conversation | None = None,
        stop: tuple[str, ...] = (),
        sampling: Sampling | None = None,
        logprobs: int | None = None,
        opened: Opened | None = None,
    ) -> AnswerStream:
        """``logprobs``: None for none, else the alternatives per token (``services.gateway.params.logprobs``).
        ``opened(answer_id, target)`` is called just before the first token of the answer that will be returned is
        awaited, so what it schedules runs while Triton prefills; not for a canary attempt, which the live engine
        may still replace."""
        question, max_tokens = self.check(question, max_tokens)
        chat = chat or Conversation()
        target = self.router.pick()
        asked = (stop, sampling, logprobs)
        canary = target.state == "canary"
        try:
            return await self._open(
                new_answer_id(), target, question, max_tokens, principal, chat, *asked, None if canary else opened
            )
        except GatewayError:
            # A canary that fails before its first token is logged against it (the verdict counts it) and the
            # customer gets the live engine's answer instead.
            live = self.router.live
            if not canary or live is None or live == target:
                raise
            return await self._open(new_answer_id(), live, question, max_tokens, principal, chat, *asked, opened)

    async def _open(
        self,
        answer_id: str,
        target: Target,
        question: str,
        max_tokens: int | None,
        principal: Principal,
        chat: Conversation,
        stop: tuple[str, ...],
        sampling: Sampling | None,
        logprobs: int | None = None,
        opened: Opened | None = None,
    ) -> AnswerStream:
        t0 = time.perf_counter()
        row: dict[str, Any] = {
            "answer_id": answer_id,
            "question": question,
            "answer": "",
            "engine_id": target.engine_id,
            "model_id": target.model_id,
            "dataset_id": target.dataset_id,
            "triton_model": target.triton_model,
            "triton_version": target.triton_version,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "api_key_id": principal.key_id,
            "conversation_id": chat.conversation_id or None,
        }
        grounding = await self.knowledge.for_target(target)
        previous = chat.previous_question
        if previous:  # Grounding.ground observes RETRIEVAL_SECONDS itself; the conversation path does it here
            started = time.perf_counter()
            grounded = conversation.ground(grounding, question, previous)
            metrics.RETRIEVAL_SECONDS.observe(time.perf_counter() - started)
        else:
            grounded = grounding.ground(question)
        if grounded.confidence is not None:
            row.update(entry_ids=grounded.entry_ids, retrieval_scores=grounded.scores, confidence=grounded.confidence,
                       handoff=grounded.handoff, unspoken_kinds=list(grounded.unspoken) or None)  # fmt: skip
        if row.get("handoff"):
            metrics.HANDOFFS.labels(target.state).inc()
            deltas: AsyncIterator[Delta] = fixed_deltas(self.settings.handoff_text(), logprobs is not None)
        elif grounded.verbatim is not None:
            row["verbatim"] = True
            deltas = fixed_deltas(grounded.verbatim, logprobs is not None)
        else:
            deltas = stream_answer(
                self.client,
                target.triton_model,
                question,
                max_tokens=max_tokens,
                version=str(target.triton_version),
                context=grounded.context,
                sampling=sampling,
                logprobs=logprobs,
            )
            if grounding.min_support > 0 and grounded.context:
                deltas = checked(deltas, grounded.context, grounding.min_support, self.settings.handoff_text(), row,
                                 target.state, stop=stop, bigrams=grounding.opening_bigrams)  # fmt: skip
        first_delta = anext(deltas)  # sends the Triton request once awaited
        if opened is not None:
            opened(answer_id, target)
        try:
            first = await first_delta
        except (*TRITON_ERRORS, StopAsyncIteration) as exc:
            await deltas.aclose()  # type: ignore[attr-defined]
            error = (
                triton_error(exc, target)
                if isinstance(exc, TRITON_ERRORS)
                else GatewayError(502, "engine_error", f"engine {target.engine_id} ended the stream without an answer")
            )
            row.update(status="error", finish_reason="error", latency_ms=(time.perf_counter() - t0) * 1000)
            self.log.record(row)
            metrics.observe_answer(target.engine_id, target.state, "error", False, row.get("confidence"), "")
            log.warning("answer %s on %s failed: %s", answer_id, target.engine_id, error.message)
            raise error from exc
        return AnswerStream(answer_id, target, row, deltas, first, t0, self.log, chat.conversation_id, stop)
