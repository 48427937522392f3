"""Greedy decoding of an exported ONNX model with its KV cache, several prompts at once.

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

from libs.common.prompting import render_prompt, to_messages

ENGINE_META = "kefu_engine.json"


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


def encode_question(tokenizer: Any, question: str, context: str = "") -> list[int]:
    """Prompt token ids exactly as trained: the chat template already holds BOS, so add no special tokens."""
    prompt = render_prompt(tokenizer, to_messages(question, context))
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


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
        options.intra_op_num_threads = threads
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
        width = max(len(prompts[i]) for i in pending)
        ids = np.full((len(pending), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(pending), width), dtype=np.int64)
        for row, i in enumerate(pending):
            ids[row, width - len(prompts[i]) :] = prompts[i]
            mask[row, width - len(prompts[i]) :] = 1
        positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        empty = np.zeros((self.num_layers, len(pending), self.num_kv_heads, 0, self.head_dim), dtype=np.float32)
        keys, values = empty, empty
        produced = dict.fromkeys(pending, 0)
        while True:
            logits, keys, values = self.session.run(
                None,
                {
                    "input_ids": ids,
                    "attention_mask": mask,
                    "position_ids": positions,
                    "past_keys": keys,
                    "past_values": values,
                },
            )
            next_ids = logits.argmax(axis=-1)
            events, keep = [], []
            for row, i in enumerate(pending):
                token = int(next_ids[row])
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
                keys, values = keys[:, keep], values[:, keep]
                mask, positions, next_ids = mask[keep], positions[keep], next_ids[keep]
                pending = [pending[row] for row in keep]
            ids = next_ids.astype(np.int64)[:, None]
            mask = np.concatenate([mask, np.ones((len(pending), 1), dtype=np.int64)], axis=1)
            positions = positions[:, -1:] + 1

    def greedy(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        """Generated ids per prompt, stop token excluded (what the gate compares with torch greedy)."""
        out: list[list[int]] = [[] for _ in prompts]
        for step in self.stream(prompts, [max_new_tokens] * len(prompts)):
            for event in step:
                if event.token_id is not None:
                    out[event.index].append(event.token_id)
        return out


class TextStream:
    """Incremental detokenizer: hands out only text that later tokens cannot change (no half UTF-8 characters)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self._text()
        # A trailing U+FFFD is a multi-byte character whose remaining bytes are still to come.
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""
        delta, self.emitted = text[len(self.emitted) :], text
        return delta

    def flush(self) -> str:
        text = self._text()
        delta = text[len(self.emitted) :] if text.startswith(self.emitted) else ""
        self.emitted = text
        return delta


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
