"""What a training run learns from and is judged on, with retrieval: the rows, the step budget, the measures.

``prepare`` turns a dataset's rows into grounded training rows and the evaluation splits as the gateway would
prompt them; ``measure`` scores the trained model on held-out paraphrases, out-of-scope probes and edited
references, and calibrates the hand-off threshold that the builder ships with the engine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from libs.common import answer_check, retrieval
from libs.common.knowledge import Entry
from libs.common.retrieval import Retriever, calibrate_threshold
from libs.common.scoring import char_f1, score
from services.trainer import augment, grounding
from services.trainer.config import TrainConfig
from services.trainer.data import FaqRow
from services.trainer.evaluate import evaluate_rows

RETRIEVAL_FILE = "retrieval.json"


@dataclass
class Prepared:
    train_set: list[FaqRow]
    splits: dict[str, list[FaqRow]]  # train / eval / regression, prompted as served
    retriever: Retriever | None
    epochs: float
    budget: dict[str, Any] = field(default_factory=dict)
    originals: dict[str, list[FaqRow]] = field(default_factory=dict)  # the dataset's rows, unprompted
    # Out-of-scope questions from real traffic (the serving profile's unanswered clusters) beside the built-in ones.
    served_probes: list[str] = field(default_factory=list)


def budget_epochs(config: TrainConfig, entries: int, rows: int) -> tuple[float, dict[str, Any]]:
    """Epochs over ``rows`` training rows so each of ``entries`` FAQ entries is seen ``passes_per_entry`` times,
    within [min_examples, max_examples] rows seen in all; a fixed ``num_train_epochs`` overrides."""
    if config.num_train_epochs is not None:
        epochs = config.num_train_epochs
        return epochs, {"rule": "fixed epochs", "epochs": epochs, "examples": epochs * rows}
    wanted = config.passes_per_entry * entries
    examples = min(max(wanted, config.min_examples), config.max_examples)
    epochs = examples / rows
    return epochs, {
        "rule": "passes_per_entry within [min_examples, max_examples]",
        "entries": entries,
        "rows": rows,
        "examples": math.ceil(examples),
        "epochs": round(epochs, 3),
        "floor_applied": wanted < config.min_examples,
        "cap_applied": wanted > config.max_examples,
    }


def prepare(
    train_rows: Sequence[FaqRow],
    eval_rows: Sequence[FaqRow],
    regression_rows: Sequence[FaqRow],
    entries: Sequence[Entry],
    config: TrainConfig,
) -> Prepared:
    splits = {"train": list(train_rows), "eval": list(eval_rows), "regression": list(regression_rows)}
    if not config.grounded:
        epochs, budget = budget_epochs(config, len(train_rows), len(train_rows))
        return Prepared(list(train_rows), splits, None, epochs, budget)
    retriever = Retriever(entries)
    mix = grounding.Mix.of(config)
    train_set = grounding.training_rows(train_rows, retriever, mix, config.seed, rewrites_only=eval_rows)
    served = {
        name: [grounding.serving_row(r.instruction, r.input, r.output, retriever, config.retrieval_k) for r in rows]
        for name, rows in splits.items()
    }
    epochs, budget = budget_epochs(config, len(train_rows) + len(eval_rows), len(train_set))
    budget["augmentation"] = {**augment.describe(), "mix": mix.__dict__, "rows": len(train_set)}
    return Prepared(train_set, served, retriever, epochs, budget, splits)


def measure(
    model: Any, tokenizer: Any, prepared: Prepared, config: TrainConfig, **gen: int
) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """(metrics, samples, retrieval manifest) of the grounded behaviour; empty when training was not grounded."""
    retriever = prepared.retriever
    if retriever is None:
        return {}, {}, {}
    k = config.retrieval_k
    base_rows = [*prepared.originals["train"], *prepared.originals["eval"]]
    heldout = grounding.heldout_questions(base_rows, config.seed)
    conf = {q: retriever.search(q, k).confidence for q, _ in heldout}
    probes = [retriever.search(q, k).confidence for q in grounding.OUT_OF_SCOPE_PROBES]
    served = [retriever.search(q, k).confidence for q in prepared.served_probes]
    threshold = calibrate_threshold(
        list(conf.values()), probes + served, keep=config.handoff_keep, balance=config.handoff_balance
    )
    metrics: dict[str, float] = {
        "retrieval_recall_at_1": grounding.recall_at_k(heldout, retriever, 1),
        f"retrieval_recall_at_{k}": grounding.recall_at_k(heldout, retriever, k),
        "handoff_threshold": threshold,
        "handoff_recall_out_of_scope": sum(c < threshold for c in probes) / len(probes),
        "handoff_rate_in_scope": sum(c < threshold for c in conf.values()) / max(1, len(conf)),
    }
    if served:  # the built-in probes' recall above stays comparable across runs; this one is per version
        metrics["handoff_recall_unanswered"] = sum(c < threshold for c in served) / len(served)
    samples: dict[str, Any] = {}
    sample = random.Random(config.seed).sample(heldout, min(config.paraphrase_probes, len(heldout)))
    answered = [(q, r) for q, r in sample if conf[q] >= threshold]
    rows: list[FaqRow] = []
    if sample:
        rows = [grounding.serving_row(q, r.input, r.output, retriever, k) for q, r in answered]
        samples["paraphrase"] = evaluate_rows(model, tokenizer, rows, **gen)[1] if rows else []
        predictions = [s["prediction"] for s in samples["paraphrase"]] + [""] * (len(sample) - len(rows))
        overall = score(predictions, [r.output for r in rows] + [r.output for q, r in sample if conf[q] < threshold])
        metrics.update(paraphrase_exact_match=overall["exact_match"], paraphrase_char_f1=overall["char_f1"])
        metrics["paraphrase_n"] = float(len(sample))
    # The gateway hands off an answer whose opening is not in its references below this bar (libs.common.answer_check)
    right = [(s["prediction"], row.input) for s, row in zip(samples.get("paraphrase", []), rows, strict=True)
             if char_f1(s["prediction"], s["reference"]) >= answer_check.RIGHT_F1]  # fmt: skip
    supports = [x for answer, refs in right if (x := answer_check.opening_support(answer, refs)) is not None]
    bar = answer_check.calibrate_bar(supports)
    metrics["answer_check_bar"] = bar
    hotfix = grounding.hotfix_rows(prepared.originals["train"], retriever, k, config.seed, config.hotfix_probes)
    if hotfix:
        hot, samples["hotfix"] = evaluate_rows(model, tokenizer, hotfix, **gen)
        metrics["hotfix_follow_rate"] = hot["exact_match"]
    manifest = {
        "k": k,
        "handoff_threshold": threshold,
        "index": retrieval.PARAMS,
        "calibration": {
            "keep": config.handoff_keep,
            "balance": config.handoff_balance,
            "heldout_paraphrases": len(conf),
            "out_of_scope_probes": len(probes),
            "served_unanswered_probes": len(served),
            "seed": config.seed,
        },
        # The gateway serves approved corrections through the model only when it follows edited references
        # (services/gateway/knowledge.py); None: not measured (no hot-fix probes).
        "hotfix_follow_rate": metrics.get("hotfix_follow_rate"),
        "answer_check": {
            "opening_bigrams": answer_check.OPENING_BIGRAMS,
            "min_support": bar,
            "right_answers": len(supports),
        },
    }
    return metrics, samples, manifest
