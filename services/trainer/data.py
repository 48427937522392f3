"""Ingested dataset dir → TRL conversational prompt/completion rows, and the max_length they need."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from libs.common.prompting import to_messages


@dataclass(frozen=True)
class FaqRow:
    instruction: str
    input: str
    output: str


def read_rows(path: Path) -> list[FaqRow]:
    """Rows of an ingest ``*.jsonl`` file (``instruction``, ``input``, ``output``); a missing file has none."""
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        obj = json.loads(line)
        if not obj.get("instruction") or not obj.get("output"):
            raise ValueError(f"{path}:{n}: a row needs non-empty 'instruction' and 'output'")
        rows.append(FaqRow(obj["instruction"], obj.get("input") or "", obj["output"]))
    return rows


def dataset_id(dataset_dir: Path) -> str:
    card = dataset_dir / "card.json"
    if card.is_file():
        found = json.loads(card.read_text(encoding="utf-8")).get("dataset_id")
        if found:
            return str(found)
    return dataset_dir.resolve().name


def read_card(dataset_dir: Path) -> dict[str, Any]:
    card = dataset_dir / "card.json"
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}


def to_example(row: FaqRow) -> dict[str, list[dict[str, str]]]:
    """One TRL conversational prompt/completion example; the prompt is exactly what serving renders."""
    return {
        "prompt": to_messages(row.instruction, row.input),
        "completion": [{"role": "assistant", "content": row.output}],
    }


def to_dataset(rows: Sequence[FaqRow]) -> Dataset:
    return Dataset.from_list([to_example(r) for r in rows])


def token_lengths(tokenizer: Any, rows: Sequence[FaqRow]) -> list[int]:
    """Token count of each full training sequence (prompt + answer + end-of-turn), as the trainer tokenizes it."""
    conversations = [ex["prompt"] + ex["completion"] for ex in map(to_example, rows)]
    return [len(tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]) for c in conversations]


def percentile_nearest_rank(values: Sequence[int], pct: float) -> int:
    if not values:
        raise ValueError("no lengths to take a percentile of")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def choose_max_length(
    lengths: Sequence[int],
    *,
    observed: Sequence[int] | None = None,
    override: int | None = None,
    multiple: int = 64,
    limit: int | None = None,
) -> int:
    """Smallest multiple of ``multiple`` covering the p99 length.

    ``observed`` (full request+response token lengths the gateway logged) wins over the dataset's own lengths when
    given, since that is the traffic the model will see. ``limit`` is the model's position limit.
    """
    if override is not None:
        chosen = override
    else:
        p99 = percentile_nearest_rank(list(observed) if observed else list(lengths), 99)
        chosen = max(multiple, math.ceil(p99 / multiple) * multiple)
    if limit is not None and chosen > limit:
        chosen = limit
    return chosen
