"""Decoding of an exported ONNX model with its KV cache, several prompts at once: greedy unless the caller
passes ``choose`` (the served scheduler does, for requests that asked for sampling).

The quality gate, the benchmark and the Triton python model all run this module, so the engine that passed the
gate is byte for byte the one that serves. Batching: prompts are left-padded and prefilled together, then every
decode step runs one ORT call for all unfinished rows; finished or cancelled rows are dropped from the batch (their
cache slices removed) so they cost nothing afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from libs.common.artifacts import ENGINE_META
from libs.common.prompting import render_prompt, to_messages

#: Picks each row's next token from its logits ([rows, vocab] → [rows]); greedy (argmax) when none is given.
Choose = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TokenEvent:
    """One prompt's result of one decode step: a new token, its end, or both (the last token of a length stop)."""

    index: int
    token_id: int | None
    finish_reason: str | None


@dataclass(frozen=True)
class Reply:
    """One streamed response of one request, in the shape the Triton model sends it."""

    index: int
    delta: str
    token_count: int
    prompt_tokens: int
    finish_reason: str | None
    #: ``services.builder.logprobs.TokenLogprob`` of each token since the last reply; None: the request did not ask.
    logprobs: tuple[Any, ...] | None = None


def encode_question(tokenizer: Any, question: str, context: str = "") -> list[int]:
    """Prompt token ids exactly as trained: the chat template already holds BOS, so add no special tokens."""
    prompt = render_prompt(tokenizer, to_messages(question, context))
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


#: Below this many weight bytes a decode step's matmuls are too small to split: ORT's thread pool then costs more
#: in synchronisation than it saves (the 4-layer offline base decodes 2.3x faster on one thread than on two).
SMALL_MODEL_BYTES = 256 * 2**20


def auto_threads(onnx_path: Path) -> int:
    """Intra-op threads when none are configured: 1 for small models, else ORT's default (all cores)."""
    weights = sum(p.stat().st_size for p in Path(onnx_path).parent.glob(Path(onnx_path).name + "*"))
    return 1 if weights < SMALL_MODEL_BYTES else 0


@dataclass(frozen=True)
class DecodeState:
    """KV cache and bookkeeping of rows that decode together. Rows are right-aligned: each row's padding is on the
    left, masked out, so rows of different lengths (and rows that joined later) share one tensor."""

    keys: np.ndarray  # [layers, rows, kv_heads, width, head_dim]
    values: np.ndarray
    mask: np.ndarray  # [rows, width], 0 = padding
    positions: np.ndarray  # [rows, 1], position of each row's last token
    next_ids: np.ndarray  # [rows], the token each row chose last

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    def select(self, rows: Sequence[int]) -> DecodeState:
        """Keep only ``rows``, dropping the padding columns no kept row needs any more."""
        mask = self.mask[rows]
        first = int(mask.any(axis=0).argmax())
        return DecodeState(
            self.keys[:, rows, :, first:], self.values[:, rows, :, first:], mask[:, first:],
            self.positions[rows], self.next_ids[rows],
        )  # fmt: skip

    @staticmethod
    def concat(a: DecodeState, b: DecodeState) -> DecodeState:
        """One batch of both: the narrower is left-padded (masked) to the wider's width."""
        width = max(a.mask.shape[1], b.mask.shape[1])

        def pad(s: DecodeState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            extra = width - s.mask.shape[1]
            if not extra:
                return s.keys, s.values, s.mask
            cache = ((0, 0), (0, 0), (0, 0), (extra, 0), (0, 0))
            return np.pad(s.keys, cache), np.pad(s.values, cache), np.pad(s.mask, ((0, 0), (extra, 0)))

        (ka, va, ma), (kb, vb, mb) = pad(a), pad(b)
        return DecodeState(
            np.concatenate([ka, kb], axis=1), np.concatenate([va, vb], axis=1), np.concatenate([ma, mb]),
            np.concatenate([a.positions, b.positions]), np.concatenate([a.next_ids, b.next_ids]),
        )  # fmt: skip


class Engine:
    def __init__(
        self,
        onnx_path: Path,
        *,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        eos_token_ids: Sequence[int],
        pad_token_id: int,
        max_positions: int,
        threads: int = 0,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or auto_threads(onnx_path)
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.num_layers, self.num_kv_heads, self.head_dim = num_layers, num_kv_heads, head_dim
        self.eos_token_ids = frozenset(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.max_positions = max_positions

    @classmethod
    def from_dir(cls, version_dir: Path, *, threads: int = 0) -> Engine:
        """Open the engine a build wrote into a Triton version folder (geometry from kefu_engine.json)."""
        meta = json.loads((Path(version_dir) / ENGINE_META).read_text(encoding="utf-8"))
        return cls(
            Path(version_dir) / meta["onnx_file"],
            num_layers=meta["num_layers"],
            num_kv_heads=meta["num_kv_heads"],
            head_dim=meta["head_dim"],
            eos_token_ids=meta["eos_token_ids"],
            pad_token_id=meta["pad_token_id"],
            max_positions=meta["max_positions"],
            threads=threads,
        )

    def budget(self, prompt_len: int, max_new_tokens: int) -> int:
        """New tokens a prompt may get: its request's limit, cut where positions run out."""
        return max(0, min(max_new_tokens, self.max_positions - prompt_len))

    def prefill(self, prompts: Sequence[Sequence[int]], choose: Choose | None = None) -> DecodeState:
        """Run the prompts (left-padded into one batch) and return their state, first tokens chosen (greedy, or
        ``choose(logits [rows, vocab]) -> ids [rows]``)."""
        width = max(len(p) for p in prompts)
        ids = np.full((len(prompts), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(prompts), width), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = prompt
            mask[row, width - len(prompt) :] = 1
        positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        empty = np.zeros((self.num_layers, len(prompts), self.num_kv_heads, 0, self.head_dim), dtype=np.float32)
        return self._run(ids, mask, positions, empty, empty, choose)

    def step(self, state: DecodeState, choose: Choose | None = None) -> DecodeState:
        """Feed every row its last chosen token; one ORT call for the whole batch."""
        mask = np.concatenate([state.mask, np.ones((state.rows, 1), dtype=np.int64)], axis=1)
        return self._run(state.next_ids[:, None], mask, state.positions + 1, state.keys, state.values, choose)

    def _run(self, ids, mask, positions, keys, values, choose: Choose | None = None) -> DecodeState:
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "past_keys": keys,
                 "past_values": values}  # fmt: skip
        logits, keys, values = self.session.run(None, feeds)
        chosen = logits.argmax(axis=-1) if choose is None else choose(logits)
        return DecodeState(keys, values, mask, positions[:, -1:], np.asarray(chosen, dtype=np.int64))

    def stream(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: Sequence[int],
        is_cancelled: Callable[[int], bool] | None = None,
    ) -> Iterator[list[TokenEvent]]:
        """Yield, per decode step, the events of the prompts still running; every prompt ends with a finish_reason."""
        budgets = [self.budget(len(p), m) for p, m in zip(prompts, max_new_tokens, strict=True)]
        pending = [i for i, b in enumerate(budgets) if b > 0]
        if len(pending) < len(prompts):
            yield [TokenEvent(i, None, "length") for i, b in enumerate(budgets) if b == 0]
        if not pending:
            return
        state = self.prefill([prompts[i] for i in pending])
        produced = dict.fromkeys(pending, 0)
        while True:
            events, keep = [], []
            for row, i in enumerate(pending):
                token = int(state.next_ids[row])
                if is_cancelled is not None and is_cancelled(i):
                    events.append(TokenEvent(i, None, "cancelled"))
                elif token in self.eos_token_ids:
                    events.append(TokenEvent(i, None, "stop"))
                else:
                    produced[i] += 1
                    done = produced[i] >= budgets[i]
                    events.append(TokenEvent(i, token, "length" if done else None))
                    if not done:
                        keep.append(row)
            yield events
            if not keep:
                return
            if len(keep) < len(pending):
                state = state.select(keep)
                pending = [pending[row] for row in keep]
            state = self.step(state)

    def greedy(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        """Generated ids per prompt, stop token excluded (what the gate compares with torch greedy)."""
        out: list[list[int]] = [[] for _ in prompts]
        for step in self.stream(prompts, [max_new_tokens] * len(prompts)):
            for event in step:
                if event.token_id is not None:
                    out[event.index].append(event.token_id)
        return out


class TextStream:
    """Incremental detokenizer: hands out only text that later tokens cannot change (no half UTF-8 characters).

    Decodes a short window (the ids since the last text went out, plus the ones before it as context) instead of
    the whole answer on every token, so a token costs the same at position 500 as at position 5 (vLLM's scheme).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0  # window start: context already handed out
        self.read_offset = 0  # ids before this are handed out

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        text = self._decode(self.ids[self.prefix_offset :])
        # A trailing U+FFFD is a multi-byte character whose remaining bytes are still to come.
        if len(text) <= len(prefix) or text.endswith("\ufffd") or not text.startswith(prefix):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return text[len(prefix) :]

    def flush(self) -> str:
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        text = self._decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return text[len(prefix) :] if text.startswith(prefix) else ""


def answer_stream(
    engine: Engine,
    tokenizer: Any,
    questions: Sequence[str],
    max_tokens: Sequence[int],
    is_cancelled: Callable[[int], bool] | None = None,
) -> Iterator[Reply]:
    """Serve a batch of questions: replies carry newly stable text; each question's last reply has finish_reason."""
    prompts = [encode_question(tokenizer, q) for q in questions]
    texts = [TextStream(tokenizer) for _ in questions]
    counts = [0] * len(questions)
    for step in engine.stream(prompts, max_tokens, is_cancelled):
        for event in step:
            i = event.index
            delta = ""
            if event.token_id is not None:
                counts[i] += 1
                delta = texts[i].push(event.token_id)
            if event.finish_reason is not None:
                delta += texts[i].flush()
            elif not delta:
                continue
            yield Reply(i, delta, counts[i], len(prompts[i]), event.finish_reason)
