"""Quality gate: the engine must answer like the trained model before it may be served.

``agreement`` is the share of prompts whose engine greedy token ids equal the torch model's greedy ids (the
trained model is the reference, not the gold answers: the gate judges the export, not the training).
``exact_match`` compares engine answers with the gold answers, for the report. Speeds are measured on the same
prompts, batched and batch 1, for torch and the engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from libs.common.artifacts import ArtifactStore
from libs.common.knowledge import load_knowledge
from libs.common.prompting import grounded_context
from libs.common.retrieval import Retriever
from libs.common.settings import KefuSettings
from services.builder.engine import Engine, encode_question
from services.builder.errors import BuildError
from services.builder.export import Checkpoint
from services.builder.settings import DEFAULT_MIN_AGREEMENT

SPLITS = ("eval", "train")
RETRIEVAL_FILE = "retrieval.json"  # written by the trainer next to the model


@dataclass(frozen=True)
class GatePrompt:
    question: str
    context: str
    gold: str | None
    split: str


def _read_jsonl(path: Path, split: str, limit: int) -> list[GatePrompt]:
    prompts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if len(prompts) >= limit:
            break
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BuildError(f"{path}:{n}: not valid JSON ({exc})") from exc
        if not row.get("instruction"):
            raise BuildError(f"{path}:{n}: a dataset row needs 'instruction' (and 'output' for exact match)")
        prompts.append(GatePrompt(row["instruction"], row.get("input") or "", row.get("output"), split))
    return prompts


def dataset_prompts(dataset_dir: Path, limit_per_split: int) -> list[GatePrompt]:
    """Eval then train rows of an ingested dataset dir (``eval.jsonl`` / ``train.jsonl``)."""
    prompts = [
        p
        for split in SPLITS
        if (Path(dataset_dir) / f"{split}.jsonl").is_file()
        for p in _read_jsonl(Path(dataset_dir) / f"{split}.jsonl", split, limit_per_split)
    ]
    if not prompts:
        raise BuildError(f"dataset dir {dataset_dir} has no rows in eval.jsonl or train.jsonl")
    return prompts


def held_prompts(model_dir: Path, limit_per_split: int) -> list[GatePrompt]:
    """The trainer's own evaluation samples (``eval_samples.json``), when the dataset itself is not at hand."""
    path = Path(model_dir) / "eval_samples.json"
    if not path.is_file():
        return []
    samples = json.loads(path.read_text(encoding="utf-8"))
    return [
        GatePrompt(s["question"], "", s.get("reference"), split)
        for split in SPLITS
        for s in samples.get(split, [])[:limit_per_split]
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


def _normalize(text: str) -> str:
    return " ".join(text.split())


def _share(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def run_gate(
    ckpt: Checkpoint,
    engine: Engine,
    prompts: Sequence[GatePrompt],
    *,
    max_new_tokens: int,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Compare engine and torch greedy outputs on ``prompts``; the report's ``passed`` decides the build."""
    if not prompts:
        raise BuildError("the quality gate needs at least one prompt")
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

    agree = [a == b for a, b in zip(produced, reference, strict=True)]
    texts = [ckpt.tokenizer.decode(t, skip_special_tokens=True) for t in produced]
    gold = [(p, t) for p, t in zip(prompts, texts, strict=True) if p.gold is not None]
    report: dict[str, Any] = {
        "n_prompts": len(prompts),
        "agreement": _share(agree),
        "exact_match": _share([_normalize(t) == _normalize(p.gold or "") for p, t in gold]),
        "max_new_tokens": max_new_tokens,
        "decode_tok_s": round(sum(map(len, produced)) / engine_s, 1),
        "decode_tok_s_batch1": round(single_tokens / single_s, 1),
        "torch_decode_tok_s": round(sum(map(len, reference)) / torch_s, 1),
        "torch_decode_tok_s_batch1": round(torch_single_tokens / torch_single_s, 1),
        "batch_size": batch_size,
        "min_agreement": min_agreement,
    }
    for split in SPLITS:
        rows = [i for i, p in enumerate(prompts) if p.split == split]
        golds = [i for i in rows if prompts[i].gold is not None]
        report[f"agreement_{split}"] = _share([agree[i] for i in rows])
        report[f"exact_match_{split}"] = _share(
            [_normalize(texts[i]) == _normalize(prompts[i].gold or "") for i in golds]
        )
        report[f"n_{split}"] = len(rows)
    report["disagreements"] = [
        {
            "question": p.question,
            "engine": texts[i],
            "torch": ckpt.tokenizer.decode(reference[i], skip_special_tokens=True),
        }
        for i, p in enumerate(prompts)
        if not agree[i]
    ][:5]
    report["passed"] = report["agreement"] >= min_agreement
    return report
