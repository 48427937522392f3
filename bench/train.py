"""``packed_vs_padded_train``: SFT tokens/s with rows packed padding-free into ``max_length`` sequences (TRL
BFD packing, ``TrainConfig.packing``) vs every batch padded to ``max_length``.

Same base, rows, config and epochs; the only difference is the batch shape. Tokens counted are real (non-pad)
tokens, so padding shows up as lost throughput. Runs alternate (padded, packed, padded, packed) to share the
machine's drift.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kefu.bench import SAMPLE

REPEATS = 2


def _rows() -> list[Any]:
    from services.trainer.data import FaqRow

    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [FaqRow(r["question"], "", r["answer"]) for r in rows]


def _long_tailed(rows: list[Any]) -> list[Any]:
    """The sample plus one multi-step answer per four rows (2-7 sample answers joined as numbered steps).

    Real help-desk answers are long-tailed: mostly one or two sentences, some full procedures. The bundled sample
    is uniformly short (p99 ≈ mean × 1.4), which bounds any padding saving at ~1.4x; this mix is the realistic case.
    """
    from services.trainer.data import FaqRow

    extra = []
    for i in range(0, len(rows), 4):
        steps = [rows[(i + k) % len(rows)].output for k in range(2 + i % 6)]
        answer = " ".join(f"{n}. {text}" for n, text in enumerate(steps, 1))
        extra.append(FaqRow(f"{rows[i].instruction}（详细步骤）", "", answer))
    return rows + extra


def _train_once(base: Path, rows: list[Any], work: Path, *, packed: bool) -> tuple[int, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from services.trainer.config import TrainConfig
    from services.trainer.data import choose_max_length, to_dataset, token_lengths
    from services.trainer.sft import build_sft_config

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = TrainConfig(epochs=1, packing=packed, group_by_length=False, early_stopping_patience=None, warmup_steps=0)
    max_length = choose_max_length(token_lengths(tokenizer, rows), multiple=config.length_multiple)
    args = build_sft_config(config, max_length, work, has_eval=False, tracked=False, epochs=1)
    if not packed:
        args.pad_to_multiple_of = max_length  # every batch as wide as max_length: the padded baseline
    args.disable_tqdm = True
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(rows), processing_class=tokenizer)
    # Real tokens of the rows (a packed dataset holds the same tokens in fewer, longer rows).
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    t0 = time.perf_counter()
    trainer.train()
    return tokens, time.perf_counter() - t0


def _ratio(base: Path, rows: list[Any], work: Path) -> tuple[float, float, float]:
    """(packed ÷ padded, packed tok/s, padded tok/s) over alternating runs."""
    totals = {True: [0, 0.0], False: [0, 0.0]}
    for i in range(REPEATS):
        for packed in (False, True):
            tokens, seconds = _train_once(base, rows, work / f"run-{i}-{packed}", packed=packed)
            totals[packed][0] += tokens
            totals[packed][1] += seconds
    packed_tps, padded_tps = (totals[k][0] / totals[k][1] for k in (True, False))
    return packed_tps / padded_tps, packed_tps, padded_tps


def measure(say: Callable[[str], None] = print) -> dict[str, Any]:
    from services.trainer.base_model import build_offline_base

    say("bench: SFT — packed (padding-free) vs padded to max_length")
    rows = _rows()
    with tempfile.TemporaryDirectory(prefix="kefu-bench-train-") as tmp:
        base = build_offline_base(Path(tmp) / "base", seed=0)
        _train_once(base, rows[:16], Path(tmp) / "warmup", packed=True)  # first run pays torch's lazy init
        ratio, packed_tps, padded_tps = _ratio(base, _long_tailed(rows), Path(tmp) / "long")
        sample_ratio, _, _ = _ratio(base, rows, Path(tmp) / "sample")
    return {
        "packed_vs_padded_train": ratio,
        "train_packed_tok_s": packed_tps,
        "train_padded_tok_s": padded_tps,
        "packed_vs_padded_train_sample": sample_ratio,
    }


if __name__ == "__main__":
    print(measure())
