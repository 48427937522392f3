"""``packed_vs_grouped_train``: SFT tokens/s with rows packed padding-free into ``max_length`` sequences (TRL BFD
packing, a config option) vs the trainer's default: length-grouped batches
(``train_sampling_strategy="group_by_length"``), each padded only to its longest row. The rows here are bare
questions (~40 tokens: several fit one sequence); the trainer's grounded rows (~80 tokens with their reference)
fit one per 128-token sequence, where packing only adds the cost of its flattened attention — hence the default.

Both sides are ``TrainConfig()`` with one epoch and ``packing`` the only difference: same base, rows, seed and
``max_length``. Tokens counted are real (non-pad) tokens, so padding shows up as lost throughput. Measured on the
bundled sample (uniformly short rows: little padding to save) and on a long-tailed mix (the sample plus multi-step
answers, as real help desks have). Each repeat runs both sides back to back, the order alternating between
repeats so drift favours neither; a ratio is the median of the repeats' ratios, reported with its range.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kefu.bench import sample_rows

#: Fewer than three repeats cannot give a median with a spread: ``kefu bench --repeats`` refuses them.
MIN_REPEATS = 3


def _rows() -> list[Any]:
    from services.trainer.data import FaqRow

    return [FaqRow(r["question"], "", r["answer"]) for r in sample_rows()]


def _long_tailed(rows: list[Any]) -> list[Any]:
    """The sample plus one multi-step answer per four rows (2-7 sample answers joined as numbered steps).

    Real help-desk answers are long-tailed: mostly one or two sentences, some full procedures. The bundled sample
    is uniformly short (p99 ≈ mean × 1.4), which bounds any padding saving; this mix is the realistic case.
    """
    from services.trainer.data import FaqRow

    extra = []
    for i in range(0, len(rows), 4):
        steps = [rows[(i + k) % len(rows)].output for k in range(2 + i % 6)]
        answer = " ".join(f"{n}. {text}" for n, text in enumerate(steps, 1))
        extra.append(FaqRow(f"{rows[i].instruction}（详细步骤）", "", answer))
    return rows + extra


def _train_once(base: Path, rows: list[Any], work: Path, *, packed: bool) -> float:
    """Real tokens per second of one epoch over ``rows``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTTrainer

    from services.trainer.config import TrainConfig
    from services.trainer.data import choose_max_length, to_dataset, token_lengths
    from services.trainer.sft import build_sft_config

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = TrainConfig(num_train_epochs=1, packing=packed, early_stopping_patience=None, warmup_steps=0)
    max_length = choose_max_length(token_lengths(tokenizer, rows), multiple=config.length_multiple)
    args = build_sft_config(config, max_length, work, has_eval=False, tracked=False, epochs=1)
    args.disable_tqdm = True
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(rows), processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # without tqdm it prints every log line: noise in the bench's output
    # Real tokens of the rows (a packed dataset holds the same tokens in fewer, longer rows).
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    t0 = time.perf_counter()
    trainer.train()
    return tokens / (time.perf_counter() - t0)


def compare(base: Path, rows: list[Any], work: Path, repeats: int) -> dict[str, Any]:
    """Median and range of packed ÷ grouped over ``repeats`` alternating pairs, and each side's median tok/s."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median with a spread), got {repeats}")
    ratios, speed = [], {True: [], False: []}
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        pair = {packed: _train_once(base, rows, work / f"run-{i}-{packed}", packed=packed) for packed in order}
        ratios.append(pair[True] / pair[False])
        for packed, tps in pair.items():
            speed[packed].append(tps)
    return {
        "ratio": statistics.median(ratios),
        "runs": [round(r, 3) for r in ratios],
        "packed_tok_s": statistics.median(speed[True]),
        "grouped_tok_s": statistics.median(speed[False]),
    }


def measure(say: Callable[[str], None] = print, repeats: int = MIN_REPEATS) -> dict[str, Any]:
    from services.trainer.base_model import build_offline_base

    say(f"bench: SFT — packed (padding-free) vs length-grouped, {repeats} alternating repeats per data set")
    rows = _rows()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kefu-bench-train-") as tmp:
        base = build_offline_base(Path(tmp) / "base", seed=0)
        _train_once(base, rows[:16], Path(tmp) / "warmup", packed=True)  # the first run pays torch's lazy init
        for name, data in (("", _long_tailed(rows)), ("_sample", rows)):
            got = compare(base, data, Path(tmp) / f"data{name}", repeats)
            out[f"packed_vs_grouped_train{name}"] = got["ratio"]
            out[f"packed_vs_grouped_train{name}_runs"] = got["runs"]
            out[f"train{name}_packed_tok_s"] = got["packed_tok_s"]
            out[f"train{name}_grouped_tok_s"] = got["grouped_tok_s"]
    return out


if __name__ == "__main__":
    print(measure())
