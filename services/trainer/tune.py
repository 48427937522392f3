"""``kefu tune``: Bayesian search (Optuna TPE, median pruning) over the hyperparameters that decide a FAQ model.

The objective is the quality customers get, not the training loss: held-out paraphrase exact match (the eval split's
for ungrounded runs), character F1 and training time as tie-breakers (``objective_value``). Each trial is a real
``train_model`` run, an MLflow child run under the study's parent run; trials report the held-out loss after each
evaluation and the median pruner stops the hopeless ones early. The study lives in a
database (``Settings.study_storage``), so a crashed or stopped study resumes where it was when run again, up to
``trials`` finished trials in all. The best configuration is written as a YAML that ``kefu train --config`` takes,
and logged with the parent run.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import optuna
import yaml
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from pydantic import BaseModel, Field, model_validator
from transformers import TrainerCallback

from services.trainer import tracking
from services.trainer.config import TrainConfig, upgrade_keys
from services.trainer.data import dataset_id
from services.trainer.sft import train_model

F1_WEIGHT = 0.01
TIME_WEIGHT = 1e-5
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class SearchSpace(BaseModel):
    """Ranges searched (the defaults suit the tiny base; a real base wants a lower lr range)."""

    learning_rate: tuple[float, float] = (2e-4, 3e-3)
    passes_per_entry: tuple[int, int] = Field(default=(10, 60), description="The budget: rows seen per FAQ entry.")
    per_device_train_batch_size: list[int] = Field(default_factory=lambda: [4, 8, 16])
    lora_r: list[int] = Field(default_factory=lambda: [8, 16, 32], description="Searched only for LoRA runs.")

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        # The same renames as TrainConfig's: a space YAML keeps its 'lr' / 'batch_size' with a warning.
        return upgrade_keys(data, where="search space") if isinstance(data, dict) else data


def suggest(trial: optuna.Trial, base: TrainConfig, space: SearchSpace) -> TrainConfig:
    """The trial's configuration: ``base`` with the searched values (trial parameters are named as config keys)."""
    values: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "passes_per_entry": trial.suggest_int("passes_per_entry", *space.passes_per_entry),
        "per_device_train_batch_size": trial.suggest_categorical(
            "per_device_train_batch_size", space.per_device_train_batch_size
        ),
    }
    if base.lora:
        values["lora_r"] = trial.suggest_categorical("lora_r", space.lora_r)
    return TrainConfig.model_validate({**base.model_dump(), **values})


def objective_value(metrics: dict[str, float]) -> float:
    """Exact match first; character F1 (x0.01: less than one question of 64) tells apart models with equal exact
    match, e.g. early ones that get no answer fully right; training time (1e-5 per second) breaks what ties remain."""
    for prefix in ("paraphrase", "eval", "train"):
        if f"{prefix}_exact_match" in metrics:
            em, f1 = metrics[f"{prefix}_exact_match"], metrics.get(f"{prefix}_char_f1", 0.0)
            break
    else:
        em, f1 = 0.0, 0.0
    return float(em) + F1_WEIGHT * float(f1) - TIME_WEIGHT * float(metrics.get("train_seconds", 0.0))


class _ReportToTrial(TrainerCallback):
    """Reports the held-out loss after each evaluation (step = the evaluation's number, comparable across budgets)
    and prunes the trial when the median pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self.evaluations = trial, 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any):
        loss = (metrics or {}).get("eval_heldout_loss", (metrics or {}).get("eval_train_loss"))
        if loss is None:
            return
        self.evaluations += 1
        self.trial.report(-float(loss), self.evaluations)
        if self.trial.should_prune():
            if mlflow.active_run() is not None:
                mlflow.set_tag("kefu.tune.state", "pruned")
            raise optuna.TrialPruned(f"held-out loss {loss:.4f} after evaluation {self.evaluations}")


@dataclass(frozen=True)
class TuneResult:
    study_name: str
    best_value: float
    best_params: dict[str, Any]
    best_config: Path
    trials: int  # finished (complete or pruned) trials in the study, earlier runs included
    parent_run_id: str | None


def tune(
    dataset_dir: Path,
    out_config: Path,
    base_config: TrainConfig,
    *,
    base: Path,
    trials: int,
    storage: str,
    tracking_uri: str | None,
    artifact_root: Path,
    space: SearchSpace | None = None,
    say: Callable[[str], None] = print,
) -> TuneResult:
    """Run (or resume) the study of ``dataset_dir`` until it has ``trials`` finished trials; write the best config."""
    space = space or SearchSpace()
    ds_id = dataset_id(dataset_dir)
    name = f"kefu-tune-{ds_id}"
    # Heartbeats: a trial left RUNNING by a crash is marked failed when the study is resumed, and not counted.
    rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=30, grace_period=90)
    study = optuna.create_study(
        study_name=name,
        storage=rdb,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=base_config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    work = Path(tempfile.mkdtemp(prefix="kefu-tune-"))

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial, base_config, space)
        say(f"trial {trial.number}: {trial.params}")
        result = train_model(
            dataset_dir, work / f"trial-{trial.number}", config, base=base, tracking_uri=tracking_uri,
            artifact_root=artifact_root, keep_failed=True, callbacks=[_ReportToTrial(trial)], register=False,
        )  # fmt: skip
        shutil.rmtree(result.model_dir, ignore_errors=True)  # the study keeps figures, not models
        value = objective_value(result.metrics)
        trial.set_user_attr("metrics", result.metrics)
        trial.set_user_attr("run_id", result.run_id)
        say(f"trial {trial.number}: objective {value:.4f} ({_summary(result.metrics)})")
        return value

    parent = (
        tracking.start_run(tracking_uri, artifact_root, base_config.experiment_name, run_name=name)
        if tracking_uri
        else None
    )
    try:
        with parent if parent is not None else contextlib.nullcontext():
            remaining = trials - _finished(study)
            if remaining > 0:
                study.optimize(
                    objective,
                    n_trials=remaining,
                    callbacks=[MaxTrialsCallback(trials, states=FINISHED)],
                    catch=(RuntimeError, ValueError),
                )
            best_config = _write_best(study, base_config, out_config)
            if parent is not None:
                mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
                mlflow.log_metric("best_objective", study.best_value)
                mlflow.set_tags({"kefu.tune.study": name, "kefu.tune.best_trial": str(study.best_trial.number)})
                mlflow.log_artifact(str(best_config), artifact_path="tune")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TuneResult(
        name, study.best_value, study.best_params, best_config, _finished(study), parent.info.run_id if parent else None
    )


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _summary(metrics: dict[str, float]) -> str:
    keys = ("paraphrase_exact_match", "train_exact_match", "eval_exact_match", "train_seconds")
    return ", ".join(f"{k} {metrics[k]:.3g}" for k in keys if k in metrics)


def _write_best(study: optuna.Study, base_config: TrainConfig, out: Path) -> Path:
    """The best trial's configuration as YAML for ``kefu train --config`` (the base config plus the found values)."""
    # A study begun before the renames has its parameters under the old names ('lr'): read them as the new ones.
    best = TrainConfig.model_validate(
        {**base_config.model_dump(), **upgrade_keys(study.best_params, where=study.study_name)}
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    trial = study.best_trial
    header = f"# kefu tune: best of study {study.study_name} (trial {trial.number}, {study.best_value:.4f})\n"
    out.write_text(header + yaml.safe_dump(best.model_dump(mode="json"), allow_unicode=True, sort_keys=True), "utf-8")
    return out
