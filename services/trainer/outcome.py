"""What a training run produced: its measures (the splits as served, the grounded behaviour, the loss curve) and
the model dir written with its manifest, metrics, samples, retrieval manifest and gate outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libs.common.artifacts import tree_sha256
from services.trainer import gate, grounded_eval
from services.trainer.config import TrainConfig
from services.trainer.evaluate import evaluate_rows


@dataclass(frozen=True)
class Measured:
    metrics: dict[str, float]
    samples: dict[str, Any]  # per split: question, reference, prediction (eval_samples.json, MLflow)
    retrieval: dict[str, Any]  # k and the calibrated hand-off threshold; empty for an ungrounded run


def measure(
    trainer: Any,
    final: Any,
    tokenizer: Any,
    prepared: grounded_eval.Prepared,
    config: TrainConfig,
    train_seconds: float,
    max_length: int,
) -> Measured:
    """Greedy answers on every split as served, the grounded measures, and the run's loss and speed figures."""
    metrics: dict[str, float] = {}
    if prepared.splits["eval"]:
        metrics["eval_loss"] = trainer.evaluate(trainer.eval_dataset["heldout"])["eval_loss"]
    gen = {"max_new_tokens": config.gen_max_new_tokens, "batch_size": config.gen_batch_size}
    samples: dict[str, Any] = {}
    for split, rows in prepared.splits.items():
        if rows:
            scores, samples[split] = evaluate_rows(final, tokenizer, rows, **gen)
            metrics.update({f"{split}_{k}": v for k, v in scores.items()})
    grounded_metrics, grounded_samples, retrieval = grounded_eval.measure(final, tokenizer, prepared, config, **gen)
    metrics.update(grounded_metrics)
    samples.update(grounded_samples)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trained_tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * (trainer.state.epoch or 0)
    metrics.update(
        initial_loss=losses[0],
        final_loss=losses[-1],
        epochs_trained=float(trainer.state.epoch or 0),
        train_seconds=train_seconds,
        tokens_per_second=trained_tokens / train_seconds,
        max_length=float(max_length),
    )
    return Measured(metrics, samples, retrieval)


def write_model(
    built: Path, final: Any, tokenizer: Any, manifest: dict[str, Any], measured: Measured, gate_doc: dict[str, Any]
) -> str:
    """Save weights + tokenizer and the run's documents to ``built``; returns the model id (content address)."""
    final.save_pretrained(built)
    tokenizer.save_pretrained(built)
    # The id covers weights and tokenizer only, so the same training result gets the same id.
    model_id = f"sha-{tree_sha256(built)[:16]}"
    documents: dict[str, Any] = {
        "kefu_model.json": {"model_id": model_id, **manifest},
        "metrics.json": measured.metrics,
        "eval_samples.json": measured.samples,
        gate.GATE_FILE: gate_doc,
    }
    if measured.retrieval:
        documents[grounded_eval.RETRIEVAL_FILE] = measured.retrieval
    for name, document in documents.items():
        indent = 1 if name == "eval_samples.json" else 2
        (built / name).write_text(json.dumps(document, ensure_ascii=False, indent=indent), "utf-8")
    return model_id
