"""Quality gate: the engine must answer like the trained model, and answer customers right, before it is served.

Generation and speed are measured here; the decision is ``gate_checks.judge`` (pure, unit-tested): export parity
(engine greedy ids equal the trained model's), the approved corrections, and the engine's exact match against the
gold answers compared with the trained model's on the same prompts. Prompts come from ``gate_prompts``, built the
way the gateway builds them. Speeds are measured on the same prompts, batched and batch 1, for torch and the engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from services.builder.engine import Engine, encode_question
from services.builder.errors import BuildError
from services.builder.export import Checkpoint
from services.builder.gate_checks import Outcome, Thresholds, judge
from services.builder.gate_prompts import GatePrompt


@torch.inference_mode()
def torch_greedy(
    ckpt: Checkpoint, prompts: Sequence[Sequence[int]], max_new_tokens: int, batch_size: int = 1
) -> list[list[int]]:
    """The trained model's greedy ids (left-padded batches, as the trainer evaluates), stop token excluded."""
    eos = set(ckpt.eos_token_ids)
    pad = ckpt.tokenizer.pad_token_id if ckpt.tokenizer.pad_token_id is not None else ckpt.eos_token_ids[0]
    out: list[list[int]] = [[] for _ in prompts]
    # Similar lengths together keep padding, and so wasted compute, small.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, width - len(prompts[i]) :] = torch.tensor(list(prompts[i]))
            mask[r, width - len(prompts[i]) :] = 1
        generated = ckpt.model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(eos),
            pad_token_id=pad,
        )[:, width:].tolist()
        for r, i in enumerate(rows):
            tokens = generated[r]
            stop = next((k for k, t in enumerate(tokens) if t in eos), len(tokens))
            out[i] = tokens[:stop]
    return out


def run_gate(
    ckpt: Checkpoint,
    engine: Engine,
    prompts: Sequence[GatePrompt],
    *,
    max_new_tokens: int,
    thresholds: Thresholds | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Generate with the engine and torch on ``prompts`` and judge them; the report's ``passed`` decides the build."""
    if not prompts:
        raise BuildError("the quality gate needs at least one prompt")
    thresholds = thresholds or Thresholds()
    ids = [encode_question(ckpt.tokenizer, p.question, p.context) for p in prompts]
    started = time.perf_counter()
    reference = torch_greedy(ckpt, ids, max_new_tokens, batch_size)
    torch_s = time.perf_counter() - started

    started = time.perf_counter()
    produced: list[list[int]] = []
    for start in range(0, len(ids), batch_size):
        produced.extend(engine.greedy(ids[start : start + batch_size], max_new_tokens))
    engine_s = time.perf_counter() - started

    # Batch-1 speeds on a few prompts: the latency one streaming user sees.
    single = ids[: min(4, len(ids))]
    started = time.perf_counter()
    single_tokens = sum(len(engine.greedy([p], max_new_tokens)[0]) for p in single)
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    torch_single_tokens = sum(map(len, torch_greedy(ckpt, single, max_new_tokens)))
    torch_single_s = time.perf_counter() - started

    def decode(tokens: list[int]) -> str:
        return ckpt.tokenizer.decode(tokens, skip_special_tokens=True)

    # The trained model's answers are decoded from the reference ids already generated: no second generation.
    outcomes = [
        Outcome(p.question, p.split, p.gold, decode(mine), decode(ref), mine == ref)
        for p, mine, ref in zip(prompts, produced, reference, strict=True)
    ]
    report = judge(outcomes, thresholds)
    report.update(
        max_new_tokens=max_new_tokens,
        decode_tok_s=round(sum(map(len, produced)) / engine_s, 1),
        decode_tok_s_batch1=round(single_tokens / single_s, 1),
        torch_decode_tok_s=round(sum(map(len, reference)) / torch_s, 1),
        torch_decode_tok_s_batch1=round(torch_single_tokens / torch_single_s, 1),
        batch_size=batch_size,
        disagreements=[
            {"question": o.question, "engine": o.engine, "torch": o.torch} for o in outcomes if not o.agrees
        ][:5],
    )
    return report
