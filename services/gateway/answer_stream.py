"""An answer being streamed: its deltas (stop strings cut), its figures, and its row written to the log at the end.

``AnswerStream`` is what ``services.gateway.answering.Answerer.start`` returns once the first delta has arrived;
both APIs iterate it. Replies the model does not generate (the hand-off reply, an approved correction served as is)
stream through the same class as a single delta (``fixed_deltas``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from tritonclient.utils import InferenceServerException

from libs.common.triton_stream import Delta
from services.gateway import metrics
from services.gateway.answer_log import AnswerLog
from services.gateway.errors import GatewayError, unavailable
from services.gateway.routing import Target
from services.gateway.stopping import StopCutter

# tritonclient raises InferenceServerException for Triton-side errors and grpcs own error when it cannot connect.
TRITON_ERRORS = (InferenceServerException, grpc.RpcError)
_NOT_SERVING = ("unavailable", "unknown model", "not found", "not ready", "failed to connect", "connection refused")


def triton_error(exc: Exception, target: Target) -> GatewayError:
    """Triton unreachable or the version not loaded: 503. The engine itself failing: 502."""
    text = str(exc).lower()
    where = f"engine {target.engine_id} ({target.triton_model} v{target.triton_version})"
    if any(marker in text for marker in _NOT_SERVING):
        return unavailable(f"{where} is not being served by Triton: {exc}")
    return GatewayError(502, "engine_error", f"{where} failed: {exc}")


class AnswerStream:
    """An answer whose first delta has arrived; iterate it once for every delta, first included."""

    def __init__(
        self,
        answer_id: str,
        target: Target,
        row: dict[str, Any],
        deltas: AsyncIterator[Delta],
        first: Delta,
        t0: float,
        answer_log: AnswerLog,
        conversation_id: str = "",
        stop: tuple[str, ...] = (),
    ) -> None:
        self.answer_id, self.target, self.row = answer_id, target, row
        self._deltas, self._first, self._t0, self._log = deltas, first, t0, answer_log
        self.conversation_id = conversation_id
        self._cutter = StopCutter(stop) if stop else None
        self._parts: list[str] = []
        #: OpenAI ``logprobs.content`` items so far; None when the request did not ask for log-probabilities.
        self.logprobs: list[dict] | None = None if first.logprobs is None else []
        self.prompt_tokens = first.prompt_tokens
        self.completion_tokens = 0
        self.finish_reason = ""
        self.ttft_s = time.perf_counter() - t0
        self._first_tokens = first.token_count  # more than one when the answer check held the opening back

    def _note(self, delta: Delta) -> Delta:
        if self._cutter is not None:
            # A delta's log-probabilities go with it whole: the tokens that made a stop string are listed, as vLLM.
            text = self._cutter.feed(delta.text)
            if self._cutter.stopped:
                delta = Delta(text, delta.token_count, delta.prompt_tokens, "stop", delta.logprobs)
            else:
                text += self._cutter.flush() if delta.finish_reason else ""
                delta = Delta(text, delta.token_count, delta.prompt_tokens, delta.finish_reason, delta.logprobs)
        self._parts.append(delta.text)
        if self.logprobs is not None and delta.logprobs:
            self.logprobs.extend(delta.logprobs)
        self.completion_tokens = delta.token_count
        self.prompt_tokens = delta.prompt_tokens or self.prompt_tokens
        self.finish_reason = delta.finish_reason
        return delta

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def entry_ids(self) -> list[str]:
        """The knowledge entries the answer was grounded on, best first."""
        return list(self.row.get("entry_ids") or [])

    @property
    def handoff(self) -> bool:
        return bool(self.row.get("handoff"))

    @property
    def verbatim(self) -> bool:
        """An approved correction served as is, not generated (``services.gateway.knowledge``)."""
        return bool(self.row.get("verbatim"))

    def grounding(self) -> dict[str, object]:
        """The ``kefu`` extension of OpenAI responses (the official SDKs keep unknown fields)."""
        return {
            "entry_ids": self.entry_ids,
            "handoff": self.handoff,
            "confidence": self.row.get("confidence"),
            "verbatim": self.verbatim,
        }

    async def __aiter__(self) -> AsyncIterator[Delta]:
        status = "error"
        try:
            first = self._note(self._first)
            yield first
            if not first.finish_reason:
                async for delta in self._deltas:
                    delta = self._note(delta)
                    yield delta
                    if delta.finish_reason:  # a stop string matched: leaving closes the Triton request
                        break
            status = "ok"
        except (GeneratorExit, asyncio.CancelledError):
            status = "cancelled"
            raise
        except TRITON_ERRORS as exc:
            raise triton_error(exc, self.target) from exc
        finally:
            # Ends the Triton request if it is still running (client gone). This never suspends: the Triton
            # generator is either finished already or parked at its yield, where closing it only cancels its gRPC
            # stream — so it is safe even in a cancelled task, whose next real await would be cancelled again.
            await self._deltas.aclose()  # type: ignore[attr-defined]
            self._finish(status)

    def _finish(self, status: str) -> None:
        latency = time.perf_counter() - self._t0
        row = self.row
        row.update(
            answer=self.text, status=status, finish_reason=self.finish_reason or status, ttft_ms=self.ttft_s * 1000,
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, latency_ms=latency * 1000,
        )  # fmt: skip
        self._log.record(row)
        route = self.target.state
        metrics.observe_answer(
            row["engine_id"] or "", route, status, self.handoff, row.get("confidence"), self.text,
            verbatim=self.verbatim,
        )  # fmt: skip
        if status != "ok":
            return
        metrics.TTFT.labels(route).observe(self.ttft_s)
        metrics.COMPLETION_TOKENS.inc(self.completion_tokens)
        metrics.PROMPT_TOKENS.observe(self.prompt_tokens)
        metrics.TOTAL_TOKENS.observe(self.prompt_tokens + self.completion_tokens)
        after_first = self.completion_tokens - max(1, self._first_tokens)
        if after_first > 0 and latency > self.ttft_s:
            metrics.TPOT.labels(route).observe((latency - self.ttft_s) / after_first)
        if latency > 0:
            metrics.TOKENS_PER_SECOND.labels(route).observe(self.completion_tokens / latency)


async def fixed_deltas(text: str, logprobs: bool) -> AsyncIterator[Delta]:
    """A reply not generated by the model (the hand-off reply, an approved text served as is) as a one-delta
    stream, so every API streams it exactly like a model answer (no model tokens: no log-probabilities, an empty
    list when asked)."""
    yield Delta(text=text, token_count=0, prompt_tokens=0, finish_reason="stop", logprobs=[] if logprobs else None)
