"""Training hyperparameters: defaults that worked for the tiny offline base, overridable from YAML and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Every knob of a training run; the whole object is recorded with the model and in MLflow."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=40, ge=1, description="Tiny base, ~45 FAQ rows: 30 epochs 82-93% train EM, 40: 100%.")
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1, description="Gradient accumulation steps.")
    lr: float = Field(default=1e-3, gt=0, description="Random init needs ~1e-3; use ~2e-4 for LoRA on real bases.")
    scheduler: Literal["cosine", "linear", "constant_with_warmup", "cosine_with_restarts"] = "cosine"
    warmup_steps: int = Field(default=10, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_length: int | None = Field(default=None, ge=16, description="None: multiple of 64 covering p99 lengths.")
    length_multiple: int = Field(default=64, ge=1)
    group_by_length: bool = Field(default=True, description="Length-grouped batches (when not packing).")
    packing: bool = Field(
        default=True,
        description="Pack rows padding-free into max_length sequences (TRL BFD); rows never attend to each other.",
    )
    seed: int = 0
    # Keep-the-best/early stopping judge checkpoints by the loss on one split, evaluated each epoch. "train": a
    # random-init base can only memorise, and its held-out loss rises from the first epochs (selecting on it keeps a
    # checkpoint that answers nothing). "heldout": the eval split, the right judge for real checkpoints.
    best_model_split: Literal["train", "heldout"] = "train"
    early_stopping_patience: int | None = Field(default=5, ge=1, description="Epochs without improvement; None=off.")
    eval_every_epochs: int = Field(
        default=4, ge=1, description="Judge (and keep the best) every this many epochs; each pass costs ~1/3 epoch."
    )
    lora: bool = False
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_target_modules: list[str] | Literal["all-linear"] = "all-linear"
    gen_max_new_tokens: int = Field(default=128, ge=1, description="Greedy generation budget during evaluation.")
    gen_batch_size: int = Field(default=16, ge=1)
    registered_model_name: str = "kefu-faq"
    experiment_name: str = "kefu-trainer"

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of hyperparameters, got {type(data).__name__}")
        return cls.model_validate(data)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """Copy with the given fields replaced; ``None`` means 'not given on the command line' and is skipped."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return self.model_validate({**self.model_dump(), **given})
