"""``kefu train``: fine-tune a base model on an ingested dataset dir, track it, and publish it unless offline:
``model.trained`` if it passes the quality gate, else ``model.failed`` and exit code 1."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.trainer.config import TrainConfig
from services.trainer.settings import Settings

if TYPE_CHECKING:  # torch/TRL: imported only when training
    from services.trainer.sft import TrainResult


def _echo_progress(event: dict[str, Any]) -> None:
    # Per-step loss is on the progress bar already; print each judgement of each split.
    for split in ("train", "heldout"):
        if f"eval_{split}_loss" in event:
            typer.echo(
                f"step {event['step']}/{event['max_steps']} (epoch {event['epoch']:.1f}): "
                f"{split} loss {event[f'eval_{split}_loss']:.4f}"
            )


def _echo_gate(result: TrainResult, cfg: TrainConfig, out: Path, keep_failed: bool) -> None:
    from services.trainer.gate import unmeasured

    skipped = unmeasured(result.metrics, cfg)
    note = f" (not measured, skipped: {', '.join(skipped)})" if skipped else ""
    if not result.missed:
        typer.echo(f"quality gate passed{note}")
        return
    typer.echo(f"quality gate FAILED{note}; missed thresholds:", err=True)
    for miss in result.missed:
        typer.echo(f"  {miss}", err=True)
    if keep_failed:
        typer.echo(f"model kept at {out} for inspection (--keep-failed); it is not announced", err=True)
    else:
        typer.echo(f"nothing written to {out} (--keep-failed keeps the model for inspection)", err=True)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        dataset_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Ingested dataset dir.")],
        out: Annotated[Path, typer.Option("--out", help="Model dir to write (replaced atomically).")],
        offline: Annotated[bool, typer.Option("--offline", help="Train and track only; don't publish.")] = False,
        base: Annotated[
            Path | None, typer.Option(help="Base checkpoint dir; default: KEFU_TRAINER_BASE_MODEL, else the tiny base.")
        ] = None,
        config: Annotated[Path | None, typer.Option("--config", exists=True, help="YAML hyperparameters.")] = None,
        lora: Annotated[bool | None, typer.Option("--lora/--full", help="LoRA (merged on export) or full.")] = None,
        # Flags named as the config keys (TRL's SFTConfig names); the short ones used before still work.
        num_train_epochs: Annotated[
            float | None,
            typer.Option(
                "--num-train-epochs",
                "--epochs",
                help="Fixed epochs; default: the budget (each entry seen passes_per_entry times).",
            ),
        ] = None,
        learning_rate: Annotated[float | None, typer.Option("--learning-rate", "--lr")] = None,
        per_device_train_batch_size: Annotated[
            int | None, typer.Option("--per-device-train-batch-size", "--batch-size")
        ] = None,
        gradient_accumulation_steps: Annotated[
            int | None, typer.Option("--gradient-accumulation-steps", "--grad-accum")
        ] = None,
        warmup_steps: Annotated[int | None, typer.Option()] = None,
        max_length: Annotated[int | None, typer.Option(help="Default: from the data's p99 token length.")] = None,
        seed: Annotated[int | None, typer.Option()] = None,
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow URI; default KEFU_MLFLOW_TRACKING_URI.")] = None,
        no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Skip MLflow.")] = False,
        keep_failed: Annotated[
            bool,
            typer.Option(
                "--keep-failed", help="Write the model to --out even if it misses the quality gate (still exits 1)."
            ),
        ] = False,
    ) -> None:
        """Fine-tune on DATASET_DIR and write the model to --out if it passes the quality gate (else exit 1).

        The gate's thresholds are gate_min/gate_max of the training config (services/trainer/config.py)."""
        from services.trainer.sft import train_model  # heavy (torch/TRL): import only when training

        settings = Settings()
        config = config or settings.trainer_config
        cfg = TrainConfig.from_yaml(config) if config else TrainConfig()
        cfg = cfg.with_overrides(
            lora=lora,
            num_train_epochs=num_train_epochs,
            learning_rate=learning_rate,
            per_device_train_batch_size=per_device_train_batch_size,
            gradient_accumulation_steps=gradient_accumulation_steps,
            warmup_steps=warmup_steps,
            max_length=max_length,
            seed=seed,
        )
        from services.trainer.base_model import resolve_base_model  # torch: only when training

        base_dir = resolve_base_model(base or settings.trainer_base_model, settings.home / "base-models")
        result = train_model(
            dataset_dir,
            out,
            cfg,
            base=base_dir,
            tracking_uri=None if no_tracking else tracking_uri or settings.tracking_uri(),
            artifact_root=settings.home,
            progress=_echo_progress,
            keep_failed=keep_failed,
        )
        m = result.metrics
        typer.echo(
            f"model {result.model_id} -> {result.model_dir if not result.missed or keep_failed else '(not written)'}\n"
            f"train_exact_match={m['train_exact_match']:.3f} eval_exact_match={m.get('eval_exact_match', 0):.3f} "
            f"eval_char_f1={m.get('eval_char_f1', 0):.3f} train {m['train_seconds']:.1f}s "
            f"{m['tokens_per_second']:.0f} tok/s"
            + (
                f"\nparaphrase_exact_match={m['paraphrase_exact_match']:.3f} "
                f"retrieval_recall_at_1={m['retrieval_recall_at_1']:.3f} "
                f"handoff_threshold={m['handoff_threshold']:.3f} "
                f"handoff_recall_out_of_scope={m['handoff_recall_out_of_scope']:.3f} "
                f"hotfix_follow_rate={m.get('hotfix_follow_rate', 0):.3f}"
                if "paraphrase_exact_match" in m
                else ""
            )
            + (
                f" | registered v{result.registered_version}{' (champion)' if result.champion else ''}"
                if result.registered_version
                else ""
            )
        )
        _echo_gate(result, cfg, out, keep_failed)
        if result.missed:
            if not offline:
                from services.trainer.publish import publish_failure

                publish_failure(result)
            raise typer.Exit(1)
        if not offline:
            from services.trainer.publish import publish_model

            outcome = publish_model(result.model_dir, result)
            if inspect.isawaitable(outcome):
                asyncio.run(outcome)

    @app.command("tune")
    def tune_command(
        dataset_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Ingested dataset dir.")],
        trials: Annotated[int, typer.Option(min=1, help="Finished trials the study should have (resumes).")] = 20,
        out: Annotated[Path | None, typer.Option(help="Best config YAML out.")] = None,
        config: Annotated[Path | None, typer.Option("--config", exists=True, help="Base YAML hyperparameters.")] = None,
        space: Annotated[Path | None, typer.Option(exists=True, help="YAML search space.")] = None,
        base: Annotated[Path | None, typer.Option(help="Base checkpoint dir (default as in `kefu train`).")] = None,
        offline: Annotated[bool, typer.Option("--offline", help="No MLflow runs; the study is still stored.")] = False,
    ) -> None:
        """Search learning rate, budget, batch size (and LoRA rank) for DATASET_DIR; write the best as a YAML config.

        Optuna TPE with median pruning; the objective is held-out paraphrase exact match, time breaks ties. Each
        trial is an MLflow child run of one parent run. Run it again to resume a stopped study."""
        import yaml

        from services.trainer.base_model import resolve_base_model
        from services.trainer.data import dataset_id
        from services.trainer.tune import SearchSpace, tune

        settings = Settings()
        config = config or settings.trainer_config
        cfg = TrainConfig.from_yaml(config) if config else TrainConfig()
        ranges = SearchSpace.model_validate(yaml.safe_load(space.read_text("utf-8")) or {}) if space else SearchSpace()
        out = out or settings.home / "tune" / f"{dataset_id(dataset_dir)}.yaml"
        base_dir = resolve_base_model(base or settings.trainer_base_model, settings.home / "base-models")
        result = tune(
            dataset_dir, out, cfg, base=base_dir, trials=trials, storage=settings.study_storage(),
            tracking_uri=None if offline else settings.tracking_uri(), artifact_root=settings.home, space=ranges,
            say=typer.echo,
        )  # fmt: skip
        typer.echo(
            f"study {result.study_name}: {result.trials} trials, best objective {result.best_value:.4f} with "
            f"{result.best_params}\nbest config -> {result.best_config} (kefu train --config {result.best_config})"
        )
