"""``kefu train``: fine-tune a base model on an ingested dataset dir, track it, and publish it unless offline."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from services.trainer.config import TrainConfig
from services.trainer.settings import Settings


def _echo_progress(event: dict[str, Any]) -> None:
    # Per-step loss is on the progress bar already; print each judgement of each split.
    for split in ("train", "heldout"):
        if f"eval_{split}_loss" in event:
            typer.echo(
                f"step {event['step']}/{event['max_steps']} (epoch {event['epoch']:.1f}): "
                f"{split} loss {event[f'eval_{split}_loss']:.4f}"
            )


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
        epochs: Annotated[
            float | None,
            typer.Option(help="Fixed epochs; default: the budget (each entry seen passes_per_entry times)."),
        ] = None,
        lr: Annotated[float | None, typer.Option()] = None,
        batch_size: Annotated[int | None, typer.Option()] = None,
        grad_accum: Annotated[int | None, typer.Option()] = None,
        warmup_steps: Annotated[int | None, typer.Option()] = None,
        max_length: Annotated[int | None, typer.Option(help="Default: from the data's p99 token length.")] = None,
        seed: Annotated[int | None, typer.Option()] = None,
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow URI; default KEFU_MLFLOW_TRACKING_URI.")] = None,
        no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Skip MLflow.")] = False,
    ) -> None:
        """Fine-tune on DATASET_DIR and write the model to --out."""
        from services.trainer.sft import train_model  # heavy (torch/TRL): import only when training

        settings = Settings()
        config = config or settings.trainer_config
        cfg = TrainConfig.from_yaml(config) if config else TrainConfig()
        cfg = cfg.with_overrides(
            lora=lora,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            grad_accum=grad_accum,
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
        )
        m = result.metrics
        typer.echo(
            f"model {result.model_id} -> {result.model_dir}\n"
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
        if not offline:
            from services.trainer.publish import publish_model

            outcome = publish_model(result.model_dir, result)
            if inspect.isawaitable(outcome):
                asyncio.run(outcome)
