"""Hold an answer's first characters until they are judged grounded in its references; hand off if they are not.

The tiny engine, given the right reference, sometimes drifts to another entry's memorised answer (2 of the 3 wrong
answers to the demo's 40 paraphrases, 6 of the 16 on the hard fixture). Those openings are absent from the
references, while every right answer's opening is there (``libs.common.answer_check``). So the first deltas are held
until the opening can be judged (or the answer ends); below the engine's calibrated bar the Triton request is closed
and the hand-off reply streams instead, marked ``handoff`` like a retrieval hand-off. The hold costs time to first
token: the few tokens that make the opening (~3-5 decode steps); ``KEFU_GATEWAY_ANSWER_CHECK=false`` streams
unchecked.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from libs.common.answer_check import MAX_HELD_TOKENS, OPENING_BIGRAMS, judged, opening_support
from libs.common.triton_stream import Delta
from services.gateway import metrics

log = logging.getLogger("kefu.gateway.opening_check")


def _merge(held: list[Delta]) -> Delta:
    """The held deltas as one: their text and log-probabilities joined, the last one's counts and ending."""
    logprobs = None if held[0].logprobs is None else [item for d in held for item in (d.logprobs or [])]
    prompt_tokens = next((d.prompt_tokens for d in reversed(held) if d.prompt_tokens), 0)
    last = held[-1]
    return Delta("".join(d.text for d in held), last.token_count, prompt_tokens, last.finish_reason, logprobs)


def _visible(text: str, stop: tuple[str, ...]) -> str:
    """What the client will see of ``text``: up to the first stop string (``services.gateway.stopping``)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


async def checked(
    deltas: AsyncIterator[Delta],
    references: str,
    bar: float,
    handoff_text: str,
    row: dict[str, Any],
    route: str,
    *,
    stop: tuple[str, ...] = (),
    bigrams: int = OPENING_BIGRAMS,
) -> AsyncIterator[Delta]:
    """``deltas`` as they come once the opening passed; the hand-off reply (and ``row["handoff"]`` set) if not.
    The opening judged is what the client would see (text before a ``stop`` string), held for at most
    ``MAX_HELD_TOKENS``. Closing this stream closes ``deltas`` (the Triton request), as closing ``deltas`` would."""
    try:
        held: list[Delta] = []
        async for delta in deltas:
            held.append(delta)
            text = "".join(d.text for d in held)
            seen = _visible(text, stop)
            if delta.finish_reason or seen != text or judged(seen, bigrams) or delta.token_count >= MAX_HELD_TOKENS:
                break
        if not held:
            return
        merged = _merge(held)
        support = opening_support(_visible(merged.text, stop), references, bigrams)
        if support is not None and support < bar:
            row["handoff"] = row["ungrounded"] = True
            metrics.HANDOFFS.labels(route).inc()
            metrics.UNGROUNDED.labels(route).inc()
            log.info("answer %s handed off: opening %r has %.2f of its bigrams in the references (bar %.2f)",
                     row.get("answer_id"), merged.text[:40], support, bar)  # fmt: skip
            yield Delta(handoff_text, 0, merged.prompt_tokens, "stop", [] if merged.logprobs is not None else None)
            return
        yield merged
        if not merged.finish_reason:
            async for delta in deltas:
                yield delta
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
