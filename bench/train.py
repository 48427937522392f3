"""``packed_vs_padded_train``: SFT tokens/s with length-grouped batches (the trainer's setting) vs every batch
padded to ``max_length``.

Same base, rows, config and steps; the only difference is the batch shape (``group_by_length`` + pad-to-longest
vs random order + ``pad_to_multiple_of=max_length``). Tokens counted are real (non-pad) tokens, so padding shows
up as lost throughput. True packing (padding-free) needs flash-attention kernels; on CPU length grouping is what
the trainer uses. Runs alternate (padded, grouped, padded, grouped) to share the machine's drift.
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


def _train_once(base: Path, rows: list[Any], work: Path, *, grouped: bool) -> tuple[int, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from services.trainer.config import TrainConfig
    from services.trainer.data import choose_max_length, to_dataset, token_lengths
    from services.trainer.sft import build_sft_config

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = TrainConfig(epochs=1, group_by_length=grouped, early_stopping_patience=None, warmup_steps=0)
    max_length = choose_max_length(token_lengths(tokenizer, rows), multiple=config.length_multiple)
    args = build_sft_config(config, max_length, work, has_eval=False, tracked=False)
    if not grouped:
        args.pad_to_multiple_of = max_length  # every batch as wide as max_length: the padded baseline
    args.disable_tqdm = True
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(rows), processing_class=tokenizer)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    t0 = time.perf_counter()
    trainer.train()
    return tokens, time.perf_counter() - t0


def measure(say: Callable[[str], None] = print) -> dict[str, Any]:
    from services.trainer.base_model import build_offline_base

    say("bench: SFT — length-grouped vs padded to max_length")
    rows = _rows()
    totals = {True: [0, 0.0], False: [0, 0.0]}
    with tempfile.TemporaryDirectory(prefix="kefu-bench-train-") as tmp:
        base = build_offline_base(Path(tmp) / "base", seed=0)
        _train_once(base, rows[:16], Path(tmp) / "warmup", grouped=True)  # first run pays torch's lazy init
        for i in range(REPEATS):
            for grouped in (False, True):
                tokens, seconds = _train_once(base, rows, Path(tmp) / f"run-{i}-{grouped}", grouped=grouped)
                totals[grouped][0] += tokens
                totals[grouped][1] += seconds
    grouped_tps = totals[True][0] / totals[True][1]
    padded_tps = totals[False][0] / totals[False][1]
    return {
        "packed_vs_padded_train": grouped_tps / padded_tps,
        "train_grouped_tok_s": grouped_tps,
        "train_padded_tok_s": padded_tps,
    }


if __name__ == "__main__":
    print(measure())
