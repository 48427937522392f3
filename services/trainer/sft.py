"""One supervised fine-tuning run: TRL SFTTrainer on prompt/completion rows, evaluation, atomic model export."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, EarlyStoppingCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer

from libs.common.knowledge import load_knowledge
from libs.common.prompting import chat_template_sha256
from services.trainer import gate, grounded_eval, outcome, serving_profile, tracking
from services.trainer.config import TrainConfig
from services.trainer.data import choose_max_length, dataset_id, read_card, read_rows, to_dataset, token_lengths
from services.trainer.provenance import environment


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


class JudgedSplitEarlyStopping(EarlyStoppingCallback):
    """Early stopping that waits for the judged split's evaluation. Transformers calls ``on_evaluate`` once per eval
    split (here heldout, then train); the stock callback printed "early stopping is disabled" for each split it does
    not judge (five times a run), though it went on judging the other."""

    def on_evaluate(self, args, state, control, metrics, **kwargs):  # type: ignore[no-untyped-def]
        if args.metric_for_best_model in metrics:
            super().on_evaluate(args, state, control, metrics, **kwargs)


def build_sft_config(
    config: TrainConfig, max_length: int, work: Path, has_eval: bool, tracked: bool, epochs: float
) -> SFTConfig:
    on_gpu = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(work / "checkpoints"),
        num_train_epochs=epochs,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        max_length=max_length,
        completion_only_loss=True,
        train_sampling_strategy=config.train_sampling_strategy,
        # Padding-free packing: transformers rebuilds per-row causal masks from the restarting position_ids, so
        # this is exact with sdpa/eager attention too, not only with flash-attention's varlen kernels.
        packing=config.packing,
        # A fraction of all steps: judge ``evaluations`` times per run, however many rows packing made.
        eval_strategy="steps" if has_eval else "no",
        # Below 1 so that TrainingArguments reads a ratio: eval_steps=1.0 (evaluations: 1) meant every step.
        eval_steps=min(1.0 / config.evaluations, 1 - 1e-9) if has_eval else None,
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
    if tracking_uri is not None and artifact_root is None:
        raise ValueError("artifact_root is required with tracking_uri (MLflow would write to ./mlruns otherwise)")
    ds_id = dataset_id(dataset_dir)
    profile = serving_profile.read(dataset_dir)  # real traffic, when a release made this version
    prepared, probe_use = _prepare(dataset_dir, config, profile)
    tokenizer, model = _load_base(base)
    lengths = token_lengths(tokenizer, prepared.train_set + prepared.splits["eval"])
    questions = [r.instruction for r in prepared.splits["train"]]
    served, length_use = serving_profile.length_budget(
        profile, lengths, questions, lambda q: len(tokenizer(q, add_special_tokens=False)["input_ids"]),
        given=config.max_length is not None or bool(observed_lengths),
    )  # fmt: skip
    max_length = choose_max_length(
        lengths,
        observed=observed_lengths or ([served] if served else None),
        override=config.max_length,
        multiple=config.length_multiple,
        limit=getattr(model.config, "max_position_embeddings", None),
    )
    # Provenance: code, libraries, hardware, and the traffic the model was tuned for.
    env = {**environment(), "serving_profile": serving_profile.provenance(profile, length_use, probe_use, max_length)}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    run_ctx = (
        tracking.start_run(tracking_uri, artifact_root, config.experiment_name, run_name=ds_id)
        if tracking_uri is not None
        else contextlib.nullcontext()
    )
    try:
        with run_ctx as run:
            if run is not None:
                _log_inputs(config, dataset_dir, ds_id, base, max_length, prepared, env)
            trainer_callbacks: list[TrainerCallback] = [*callbacks, *([_Progress(progress)] if progress else [])]
            trainer = _trainer(model, tokenizer, prepared, config, max_length, work, run is not None, trainer_callbacks)
            started = time.perf_counter()
            trainer.train()
            train_seconds = time.perf_counter() - started

            final = trainer.model.merge_and_unload() if config.lora else trainer.model
            measured = outcome.measure(trainer, final, tokenizer, prepared, config, train_seconds, max_length)
            missed = gate.check(measured.metrics, config)
            gate_doc = gate.report(measured.metrics, config, missed)
            manifest = {
                "dataset_id": ds_id,
                "base_model": str(base),
                "base_model_name": Path(base).name,
                "chat_template_sha256": chat_template_sha256(tokenizer),
                "max_length": max_length,
                "config": config.model_dump(),
                "budget": prepared.budget,
                "created_at": datetime.now(UTC).isoformat(),
                "run_id": run.info.run_id if run else None,
                **env,
            }
            built = work / "model"
            model_id = outcome.write_model(built, final, tokenizer, manifest, measured, gate_doc)

            registered, champion = None, False
            if run is not None:
                tracking.log_outcome(built, measured.metrics, trainer.state.log_history, measured.samples)
                tracking.log_gate(gate_doc)
                # A failed model stays in its run for inspection, but never becomes a registry version (or champion).
                if register and not missed:
                    registered, champion = tracking.register_candidate(
                        config.registered_model_name, run.info.run_id, model_id, measured.metrics
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
        chat_template_sha256=manifest["chat_template_sha256"],
        max_length=max_length,
        metrics=measured.metrics,
        run_id=run.info.run_id if run else None,
        registered_version=registered,
        champion=champion,
        missed=missed,
    )


def _prepare(
    dataset_dir: Path, config: TrainConfig, profile: dict[str, Any] | None
) -> tuple[grounded_eval.Prepared, dict[str, Any]]:
    """The dataset's rows as grounded training rows, the splits as the gateway would prompt them, and the hand-off
    probes from the serving profile (with the record of which clusters were used)."""
    train_rows = read_rows(dataset_dir / "train.jsonl")
    if not train_rows:
        raise ValueError(f"{dataset_dir}/train.jsonl has no rows")
    eval_rows = read_rows(dataset_dir / "eval.jsonl")
    regression_rows = read_rows(dataset_dir / "regression.jsonl")
    knowledge = load_knowledge(dataset_dir)
    prepared = grounded_eval.prepare(train_rows, eval_rows, regression_rows, knowledge, config)
    prepared.served_probes, used = serving_profile.handoff_probes(profile, knowledge)
    return prepared, used


def _load_base(base: Path) -> tuple[Any, Any]:
    tokenizer = AutoTokenizer.from_pretrained(base)
    if not tokenizer.chat_template:
        raise ValueError(f"tokenizer in {base} has no chat template; the prompt format must ship with the model")
    return tokenizer, AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)


def _log_inputs(
    config: TrainConfig,
    dataset_dir: Path,
    ds_id: str,
    base: Path,
    max_length: int,
    prepared: grounded_eval.Prepared,
    env: dict[str, Any],
) -> None:
    params = {
        **config.model_dump(),
        "dataset_id": ds_id,
        "base_model": str(base),
        "max_length": max_length,
        "budget": {k: v for k, v in prepared.budget.items() if k != "augmentation"},
    }
    tags = {"git_sha": env["git_sha"], **{f"lib.{k}": v for k, v in env["libraries"].items()}}
    tags["kefu.serving_profile"] = env["serving_profile"].get("sha256") or "none"
    documents = {"budget": prepared.budget, "serving_profile": env["serving_profile"]}
    tracking.log_inputs(params, read_card(dataset_dir), {**tags, **env["hardware"]}, documents)


def _trainer(
    model: Any,
    tokenizer: Any,
    prepared: grounded_eval.Prepared,
    config: TrainConfig,
    max_length: int,
    work: Path,
    tracked: bool,
    callbacks: list[TrainerCallback],
) -> SFTTrainer:
    served = prepared.splits
    has_eval = bool(served["eval"])
    if has_eval and config.early_stopping_patience:
        callbacks.append(JudgedSplitEarlyStopping(early_stopping_patience=config.early_stopping_patience))
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
    splits = {"heldout": to_dataset(served["eval"]), "train": to_dataset(served["train"])} if has_eval else None
    return SFTTrainer(
        model=model,
        args=build_sft_config(config, max_length, work, has_eval, tracked, prepared.epochs),
        train_dataset=to_dataset(prepared.train_set),
        # Both splits each judgement: the loss curve shows memorisation vs generalisation; either can judge.
        eval_dataset=splits,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
