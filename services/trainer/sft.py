"""One supervised fine-tuning run: TRL SFTTrainer on prompt/completion rows, evaluation, atomic model export."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from libs.common.artifacts import tree_sha256
from libs.common.knowledge import load_knowledge
from libs.common.prompting import chat_template_sha256
from services.trainer import gate, grounded_eval, tracking
from services.trainer.config import TrainConfig
from services.trainer.data import choose_max_length, dataset_id, read_card, read_rows, to_dataset, token_lengths
from services.trainer.evaluate import evaluate_rows

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers", "mlflow")


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    model_id: str
    dataset_id: str
    base_model: str
    chat_template_sha256: str
    max_length: int
    metrics: dict[str, float]
    run_id: str | None
    registered_version: str | None
    champion: bool
    # Thresholds of the quality gate this run missed (services/trainer/gate.py); empty: it may be announced.
    missed: list[str] = field(default_factory=list)


class _Progress(TrainerCallback):
    """Forwards every log line (loss, lr, eval metrics) to the caller, e.g. the CLI's console or a status topic."""

    def __init__(self, report: Callable[[dict[str, Any]], None]) -> None:
        self.report = report

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        self.report({"step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch, **(logs or {})})


def git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def environment() -> dict[str, Any]:
    return {
        "git_sha": git_sha(),
        "libraries": {name: version(name) for name in LIBRARIES},
        "hardware": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        },
    }


def build_sft_config(
    config: TrainConfig, max_length: int, work: Path, has_eval: bool, tracked: bool, epochs: float
) -> SFTConfig:
    on_gpu = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(work / "checkpoints"),
        num_train_epochs=epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        max_length=max_length,
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        # Padding-free packing: transformers rebuilds per-row causal masks from the restarting position_ids, so
        # this is exact with sdpa/eager attention too, not only with flash-attention's varlen kernels.
        packing=config.packing,
        # A fraction of all steps: judge ``evaluations`` times per run, however many rows packing made.
        eval_strategy="steps" if has_eval else "no",
        eval_steps=1.0 / config.evaluations if has_eval else None,
        # Written only when the judged loss improves, not every epoch.
        save_strategy="best" if has_eval else "no",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=has_eval,
        metric_for_best_model=f"eval_{config.best_model_split}_loss" if has_eval else None,
        greater_is_better=False,
        # ~100 points per run: a log line is also an MLflow write, which every step made a visible share of a
        # tiny model's step time.
        logging_steps=0.01,
        report_to=["mlflow"] if tracked else "none",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        # SFTConfig turns checkpointing on by default; on a small model it only costs time (~25% on CPU).
        activation_checkpointing=False,
        dataloader_num_workers=0,
    )


def _place(built: Path, out_dir: Path, work: Path) -> None:
    """Move the finished model to ``out_dir``; an existing model there is replaced only once the new one is whole."""
    previous = work / "previous"
    if out_dir.exists():
        os.rename(out_dir, previous)
    try:
        os.rename(built, out_dir)
    except OSError:
        if previous.exists():
            os.rename(previous, out_dir)
        raise


def train_model(
    dataset_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    *,
    base: Path,
    tracking_uri: str | None,
    artifact_root: Path | None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    observed_lengths: Sequence[int] | None = None,
    keep_failed: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
    register: bool = True,
) -> TrainResult:
    """Fine-tune ``base`` on ``dataset_dir`` and write the model, ``kefu_model.json``, ``metrics.json`` and
    ``gate.json`` to ``out_dir``. With ``tracking_uri``, the run is logged to MLflow and, if it passed the quality
    gate, registered (alias ``champion`` if best). A run that misses the gate returns its misses in
    ``TrainResult.missed`` and leaves ``out_dir`` untouched unless ``keep_failed`` (for inspection). ``callbacks``
    join the trainer's (e.g. a tuning trial's pruning); ``register=False`` tracks the run without registering it."""
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    train_rows = read_rows(dataset_dir / "train.jsonl")
    eval_rows = read_rows(dataset_dir / "eval.jsonl")
    regression_rows = read_rows(dataset_dir / "regression.jsonl")
    if not train_rows:
        raise ValueError(f"{dataset_dir}/train.jsonl has no rows")
    ds_id = dataset_id(dataset_dir)
    prepared = grounded_eval.prepare(train_rows, eval_rows, regression_rows, load_knowledge(dataset_dir), config)
    served = prepared.splits

    tokenizer = AutoTokenizer.from_pretrained(base)
    if not tokenizer.chat_template:
        raise ValueError(f"tokenizer in {base} has no chat template; the prompt format must ship with the model")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lengths = token_lengths(tokenizer, prepared.train_set + served["eval"])
    max_length = choose_max_length(
        lengths,
        observed=observed_lengths,
        override=config.max_length,
        multiple=config.length_multiple,
        limit=getattr(model.config, "max_position_embeddings", None),
    )
    env = environment()
    tracked = tracking_uri is not None
    if tracked and artifact_root is None:
        raise ValueError("artifact_root is required with tracking_uri (MLflow would write to ./mlruns otherwise)")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    run_ctx = (
        tracking.start_run(tracking_uri, artifact_root, config.experiment_name, run_name=ds_id)
        if tracked
        else contextlib.nullcontext()
    )
    try:
        with run_ctx as run:
            if run is not None:
                params = {
                    **config.model_dump(),
                    "dataset_id": ds_id,
                    "base_model": str(base),
                    "max_length": max_length,
                    "budget": {k: v for k, v in prepared.budget.items() if k != "augmentation"},
                }
                tags = {"git_sha": env["git_sha"], **{f"lib.{k}": v for k, v in env["libraries"].items()}}
                tracking.log_inputs(
                    params, read_card(dataset_dir), {**tags, **env["hardware"]}, {"budget": prepared.budget}
                )
            trainer_callbacks: list[TrainerCallback] = [*callbacks, *([_Progress(progress)] if progress else [])]
            if eval_rows and config.early_stopping_patience:
                trainer_callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
            peft_config = (
                LoraConfig(
                    r=config.lora_r,
                    lora_alpha=config.lora_alpha,
                    lora_dropout=config.lora_dropout,
                    target_modules=config.lora_target_modules,
                    task_type="CAUSAL_LM",
                )
                if config.lora
                else None
            )
            trainer = SFTTrainer(
                model=model,
                args=build_sft_config(config, max_length, work, bool(eval_rows), tracked, prepared.epochs),
                train_dataset=to_dataset(prepared.train_set),
                # Both splits each judgement: the loss curve shows memorisation vs generalisation; either can judge.
                eval_dataset=(
                    {"heldout": to_dataset(served["eval"]), "train": to_dataset(served["train"])} if eval_rows else None
                ),
                processing_class=tokenizer,
                peft_config=peft_config,
                callbacks=trainer_callbacks,
            )
            started = time.perf_counter()
            trainer.train()
            train_seconds = time.perf_counter() - started
            history = trainer.state.log_history
            trained_tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * (trainer.state.epoch or 0)

            metrics: dict[str, float] = {}
            if eval_rows:
                metrics["eval_loss"] = trainer.evaluate(trainer.eval_dataset["heldout"])["eval_loss"]
            final = trainer.model.merge_and_unload() if config.lora else trainer.model
            gen = {"max_new_tokens": config.gen_max_new_tokens, "batch_size": config.gen_batch_size}
            samples: dict[str, Any] = {}
            for split, rows in served.items():
                if rows:
                    scores, samples[split] = evaluate_rows(final, tokenizer, rows, **gen)
                    metrics.update({f"{split}_{k}": v for k, v in scores.items()})
            grounded_metrics, grounded_samples, retrieval_manifest = grounded_eval.measure(
                final, tokenizer, prepared, config, **gen
            )
            metrics.update(grounded_metrics)
            samples.update(grounded_samples)
            losses = [h["loss"] for h in history if "loss" in h]
            metrics.update(
                initial_loss=losses[0],
                final_loss=losses[-1],
                epochs_trained=float(trainer.state.epoch or 0),
                train_seconds=train_seconds,
                tokens_per_second=trained_tokens / train_seconds,
                max_length=float(max_length),
            )
            missed = gate.check(metrics, config)
            gate_doc = gate.report(metrics, config, missed)

            built = work / "model"
            final.save_pretrained(built)
            tokenizer.save_pretrained(built)
            # The id covers weights and tokenizer only, so the same training result gets the same id.
            model_id = f"sha-{tree_sha256(built)[:16]}"
            template_sha = chat_template_sha256(tokenizer)
            manifest = {
                "model_id": model_id,
                "dataset_id": ds_id,
                "base_model": str(base),
                "base_model_name": Path(base).name,
                "chat_template_sha256": template_sha,
                "max_length": max_length,
                "config": config.model_dump(),
                "budget": prepared.budget,
                "created_at": datetime.now(UTC).isoformat(),
                "run_id": run.info.run_id if run else None,
                **env,
            }
            (built / "kefu_model.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), "utf-8")
            (built / "metrics.json").write_text(json.dumps(metrics, indent=2), "utf-8")
            if retrieval_manifest:
                (built / grounded_eval.RETRIEVAL_FILE).write_text(json.dumps(retrieval_manifest, indent=2), "utf-8")
            (built / "eval_samples.json").write_text(json.dumps(samples, ensure_ascii=False, indent=1), "utf-8")
            (built / gate.GATE_FILE).write_text(json.dumps(gate_doc, indent=2), "utf-8")

            registered, champion = None, False
            if run is not None:
                tracking.log_outcome(built, metrics, history, samples)
                tracking.log_gate(gate_doc)
                # A failed model stays in its run for inspection, but never becomes a registry version (or champion).
                if register and not missed:
                    registered, champion = tracking.register_candidate(
                        config.registered_model_name, run.info.run_id, model_id, metrics
                    )
            # A failed model replaces nothing at out_dir (a good model there stays) unless asked to keep it.
            if not missed or keep_failed:
                _place(built, out_dir, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(
        model_dir=out_dir,
        model_id=model_id,
        dataset_id=ds_id,
        base_model=str(base),
        chat_template_sha256=template_sha,
        max_length=max_length,
        metrics=metrics,
        run_id=run.info.run_id if run else None,
        registered_version=registered,
        champion=champion,
        missed=missed,
    )
