"""The gate's prompts: a dataset's eval and train rows (a sample) and every regression row, prompted as served.

A grounded model is gated on the prompts the gateway would build for it (the dataset's knowledge base, the k the
trainer calibrated), so the gate judges the answers customers would get, not a prompt nobody sends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libs.common.artifacts import ArtifactStore
from libs.common.knowledge import load_knowledge
from libs.common.prompting import grounded_context
from libs.common.retrieval import Retriever
from libs.common.settings import KefuSettings
from services.builder.errors import BuildError
from services.builder.export import Checkpoint

SPLITS = ("eval", "train")
#: Approved corrections (feedback service); every one is gated, never sampled: each is a promise to a customer.
REGRESSION = "regression"
REPORTED_SPLITS = (*SPLITS, REGRESSION)
RETRIEVAL_FILE = "retrieval.json"  # written by the trainer next to the model


@dataclass(frozen=True)
class GatePrompt:
    question: str
    context: str
    gold: str | None
    split: str


def _read_jsonl(path: Path, split: str, limit: int | None) -> list[GatePrompt]:
    prompts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if limit is not None and len(prompts) >= limit:
            break
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BuildError(f"{path}:{n}: not valid JSON ({exc})") from exc
        if not row.get("instruction"):
            raise BuildError(f"{path}:{n}: a dataset row needs 'instruction' (and 'output' for exact match)")
        if split == REGRESSION and not row.get("output"):
            raise BuildError(f"{path}:{n}: a regression row needs 'output' (the approved correction)")
        prompts.append(GatePrompt(row["instruction"], row.get("input") or "", row.get("output"), split))
    return prompts


def dataset_prompts(dataset_dir: Path, limit_per_split: int) -> list[GatePrompt]:
    """Eval then train rows of an ingested dataset dir (``limit_per_split`` each), then all of ``regression.jsonl``."""
    dataset_dir = Path(dataset_dir)
    prompts = [
        p
        for split in SPLITS
        if (dataset_dir / f"{split}.jsonl").is_file()
        for p in _read_jsonl(dataset_dir / f"{split}.jsonl", split, limit_per_split)
    ]
    if not prompts:
        raise BuildError(f"dataset dir {dataset_dir} has no rows in eval.jsonl or train.jsonl")
    regression = dataset_dir / f"{REGRESSION}.jsonl"
    return prompts + (_read_jsonl(regression, REGRESSION, None) if regression.is_file() else [])


def held_prompts(model_dir: Path, limit_per_split: int) -> list[GatePrompt]:
    """The trainer's own evaluation samples (``eval_samples.json``), when the dataset itself is not at hand."""
    path = Path(model_dir) / "eval_samples.json"
    if not path.is_file():
        return []
    samples = json.loads(path.read_text(encoding="utf-8"))
    limits = {**dict.fromkeys(SPLITS, limit_per_split), REGRESSION: None}
    return [
        GatePrompt(s["question"], "", s.get("reference"), split)
        for split, limit in limits.items()
        for s in samples.get(split, [])[:limit]
    ]


def retrieval_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The trainer's ``retrieval.json`` (k, hand-off threshold, index parameters); None for an ungrounded model."""
    path = Path(model_dir) / RETRIEVAL_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def grounded(prompts: Sequence[GatePrompt], dataset_dir: Path, k: int) -> list[GatePrompt]:
    """The prompts as the gateway builds them: the top-k entries of the dataset's knowledge base as references."""
    retriever = Retriever(load_knowledge(dataset_dir))
    out = []
    for p in prompts:
        refs = [(h.entry.question, h.entry.answer) for h in retriever.search(p.question, k).hits]
        out.append(GatePrompt(p.question, grounded_context(p.context, refs), p.gold, p.split))
    return out


def resolve_prompts(ckpt: Checkpoint, dataset_dir: Path | None, limit_per_split: int = 64) -> list[GatePrompt]:
    """--dataset, else the dataset kefu_model.json names (artifact store), else the model's held prompts.

    A grounded model is gated on grounded prompts (its dataset's knowledge base, its k), as it will be served.
    """
    if dataset_dir is None:
        recorded = ArtifactStore(KefuSettings().home).path("datasets", str(ckpt.meta["dataset_id"]))
        dataset_dir = recorded if recorded.is_dir() else None
    if dataset_dir is not None:
        prompts = dataset_prompts(dataset_dir, limit_per_split)
        manifest = retrieval_manifest(ckpt.path)
        return grounded(prompts, dataset_dir, int(manifest["k"])) if manifest else prompts
    recorded = ArtifactStore(KefuSettings().home).path("datasets", str(ckpt.meta["dataset_id"]))
    held = held_prompts(ckpt.path, limit_per_split)
    if not held:
        raise BuildError(
            f"no gate prompts: dataset {ckpt.meta['dataset_id']} is not in the artifact store ({recorded}) and "
            f"{ckpt.path} has no eval_samples.json; pass --dataset DIR"
        )
    return held
