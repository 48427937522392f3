"""Request parameters both APIs share: ``stop`` strings, per-request sampling and log-probabilities.

Decoding is greedy unless a request sets ``temperature`` > 0; then the engine samples that request's row of the
continuous batch at that temperature, within ``top_p``, from a generator seeded with ``seed`` (same seed, same
answer). ``logprobs`` / ``top_logprobs`` ask the engine for each answer token's log-probability and the most
likely alternatives, from the logits the token was chosen from. Values outside what the engine does are refused
with a 400 naming the parameter, never ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

from libs.common.triton_stream import Sampling
from services.gateway.errors import GatewayError, unsupported

MAX_STOP = 4  # as OpenAI
MAX_STOP_CHARS = 64
MAX_TEMPERATURE = 2.0  # as OpenAI
MAX_TOP_LOGPROBS = 20  # as OpenAI (and the engine's own limit)


def stop_strings(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """``stop`` as a tuple (empty: none); 400 for empty strings, more than 4, or longer than 64 characters."""
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > MAX_STOP:
        raise GatewayError(400, "invalid_request", f"stop: at most {MAX_STOP} stop strings")
    for s in stops:
        if not s or len(s) > MAX_STOP_CHARS or "\x00" in s:
            raise GatewayError(400, "invalid_request", f"stop: each must be 1 to {MAX_STOP_CHARS} characters")
    return stops


def sampling(
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    presence_penalty: float | None = None,
    frequency_penalty: float | None = None,
) -> Sampling | None:
    """The Triton sampling inputs for a request (None: greedy); 400 naming the parameter for what is not served."""
    for name, value in (("presence_penalty", presence_penalty), ("frequency_penalty", frequency_penalty)):
        if value not in (None, 0):
            raise unsupported(name, f"{name} is not supported: it must be 0 or unset")
    if temperature is not None and not 0 <= temperature <= MAX_TEMPERATURE:
        raise unsupported("temperature", f"must be between 0 and {MAX_TEMPERATURE}")
    if seed is not None and not -(2**63) <= seed < 2**63:  # Triton's seed input is INT64
        raise unsupported("seed", "must fit in a signed 64-bit integer")
    if top_p is not None and not 0 < top_p <= 1:
        raise unsupported("top_p", "must be greater than 0 and at most 1")
    if not temperature:
        # Greedy (the default, unlike OpenAI's temperature 1): a nucleus below 1 would change nothing.
        if top_p not in (None, 1):
            raise unsupported("top_p", "needs temperature > 0: decoding is greedy unless temperature is set")
        return None
    return Sampling(temperature=temperature, top_p=top_p, seed=seed)


def logprobs(logprobs: bool | None, top_logprobs: int | None) -> int | None:
    """The engine's ``logprobs`` input: None (not asked) or the alternatives per token; OpenAI's rules: 0 … 20,
    and ``top_logprobs`` only with ``logprobs: true``."""
    if top_logprobs is not None and not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise unsupported("top_logprobs", f"must be between 0 and {MAX_TOP_LOGPROBS}")
    if not logprobs:
        if top_logprobs:
            raise unsupported("top_logprobs", "needs logprobs: true")
        return None
    return top_logprobs or 0
