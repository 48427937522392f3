"""Log-probabilities of the served tokens, for requests that ask (OpenAI ``logprobs`` / ``top_logprobs``).

Computed from the same logits the token was chosen from, in the decode step that chose it, for the asking rows
only: a batch where nobody asked calls the engine exactly as before (no ``choose`` wrapper, no softmax), so the
cost when not asked is zero. The log-probabilities are the model's own distribution (log-softmax of the raw
logits), not the temperature/top-p reshaped one a sampled token was drawn from: what vLLM returns by default,
and what makes "the greedy token is the top-1" hold for every request.

Token text goes out in OpenAI's shape (``token``, ``bytes``, ``logprob``, ``top_logprobs``). A byte-level BPE token
(Llama 3, this project's offline base) may hold part of a UTF-8 character: its ``bytes`` are its real bytes, and
its ``token`` shows the partial bytes as ``\\xNN`` escapes, as OpenAI does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.builder.engine import Choose

MAX_TOP_LOGPROBS = 20  # as OpenAI


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its log-probability and the ``k`` most likely tokens of that step, best first."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def log_softmax(row: np.ndarray) -> np.ndarray:
    """float64 for the sums: a 32k-entry float32 sum loses the last digits a logprob near 0 shows."""
    shifted = row.astype(np.float64) - float(row.max())
    return shifted - np.log(np.exp(shifted).sum())


def token_logprob(row: np.ndarray, token_id: int, k: int) -> TokenLogprob:
    """``token_id``'s log-probability under one row's logits [vocab], with the top ``k`` (argpartition: the whole
    vocabulary is never sorted)."""
    lp = log_softmax(row)
    top: tuple[tuple[int, float], ...] = ()
    if k > 0:
        k = min(k, lp.size)
        best = np.argpartition(-lp, k - 1)[:k] if k < lp.size else np.arange(lp.size)
        best = best[np.argsort(-lp[best], kind="stable")]
        top = tuple((int(i), float(lp[i])) for i in best)
    return TokenLogprob(int(token_id), float(lp[token_id]), top)


def recording(
    choose: Choose | None, wants: Sequence[int | None], record: Callable[[int, TokenLogprob], None]
) -> Choose | None:
    """``choose`` (None: greedy) that also hands ``record(row, TokenLogprob)`` for each row whose ``wants`` is a
    top-k count (None: the row did not ask). None when no row asked, so the engine's plain path runs."""
    asking = [(row, k) for row, k in enumerate(wants) if k is not None]
    if not asking:
        return choose

    def choose_and_record(logits: np.ndarray) -> np.ndarray:
        ids = logits.argmax(axis=-1).astype(np.int64) if choose is None else np.asarray(choose(logits))
        for row, k in asking:
            record(row, token_logprob(logits[row], int(ids[row]), k))
        return ids

    return choose_and_record


class TokenText:
    """Token id → (text, UTF-8 bytes), cached: the vocabulary is bounded and the same tokens recur."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}
        self._byte_level = _byte_decoder()

    def __call__(self, token_id: int) -> tuple[str, list[int]]:
        hit = self._cache.get(token_id)
        if hit is None:
            raw = self._bytes(token_id)
            hit = self._cache[token_id] = (raw.decode("utf-8", "backslashreplace"), list(raw))
        return hit

    def _bytes(self, token_id: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if isinstance(piece, str) and piece and all(c in self._byte_level for c in piece):
            return bytes(self._byte_level[c] for c in piece)  # byte-level BPE: each symbol is one byte
        if isinstance(piece, str) and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            return bytes([int(piece[3:5], 16)])  # SentencePiece byte fallback
        return self.tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8")

    def entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        text, raw = self(token_id)
        return {"token": text, "logprob": logprob, "bytes": raw}

    def content(self, tokens: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
        """OpenAI's ``choices[].logprobs.content`` items for these tokens."""
        return [
            {**self.entry(t.token_id, t.logprob), "top_logprobs": [self.entry(i, lp) for i, lp in t.top]}
            for t in tokens
        ]

    def dumps(self, tokens: Sequence[TokenLogprob]) -> bytes:
        return json.dumps(self.content(tokens), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte ↔ printable-symbol table, inverted (what byte-level BPE vocabularies are written in)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            symbols.append(256 + extra)
            extra += 1
    return {chr(s): b for b, s in zip(printable, symbols, strict=True)}
