"""MLflow bookkeeping for a training run: experiment, params, dataset card, loss curve, model, registry alias."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION_ALIAS = "champion"
SCORE_TAG = "kefu.score"
GATE_TAG = "kefu.gate"


def start_run(tracking_uri: str, artifact_root: Path, experiment_name: str, run_name: str) -> mlflow.ActiveRun:
    """Start (and return, for ``with``) a run whose artifacts live under ``artifact_root``, not ./mlruns of the cwd."""
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is None:
        location = (Path(artifact_root) / "mlflow" / experiment_name).resolve().as_uri()
        experiment_id = mlflow.create_experiment(experiment_name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    # Inside an active run (a tuning study's parent run) the run is its child.
    return mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=mlflow.active_run() is not None)


def log_inputs(
    params: dict[str, Any], card: dict[str, Any], tags: dict[str, str], documents: dict[str, Any] | None = None
) -> None:
    """Params, tags, the dataset card, and ``documents`` (name → JSON-able, e.g. the augmentation rules) as files."""
    # Prefixed so they never collide with the TrainingArguments that TRL's MLflow callback logs under the same names.
    mlflow.log_params({f"kefu.{k}": v for k, v in params.items()})
    mlflow.set_tags(tags)
    mlflow.log_dict(card, "dataset/card.json")
    for name, document in (documents or {}).items():
        mlflow.log_dict(document, f"training/{name}.json")


def loss_figure(log_history: list[dict[str, Any]]) -> Figure:
    """Training loss per step and per-split eval losses per epoch from ``trainer.state.log_history``."""
    # Figure without pyplot: no global backend state, safe in a worker thread and headless.
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss (per step)")
    for split in ("train", "heldout"):
        points = [(h["step"], h[f"eval_{split}_loss"]) for h in log_history if f"eval_{split}_loss" in h]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=f"{split} loss (per epoch)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


def log_outcome(
    model_dir: Path, metrics: dict[str, float], log_history: list[dict[str, Any]], samples: dict[str, Any]
) -> None:
    mlflow.log_metrics(metrics)
    mlflow.log_figure(loss_figure(log_history), "loss_curve.png")
    mlflow.log_dict(samples, "eval/samples.json")
    mlflow.log_artifacts(str(model_dir), artifact_path="model")


def log_gate(gate_doc: dict[str, Any]) -> None:
    """The quality gate's outcome: a tag to filter runs by (``kefu.gate`` = passed/failed) and ``gate.json``."""
    mlflow.set_tag(GATE_TAG, "passed" if gate_doc["passed"] else "failed")
    if gate_doc["missed"]:
        # Tag values are capped (5,000 chars in MLflow); the full list is in gate.json.
        mlflow.set_tag(f"{GATE_TAG}.missed", "; ".join(gate_doc["missed"])[:4000])
    mlflow.log_dict(gate_doc, "gate.json")


def selection_score(metrics: dict[str, float]) -> float:
    """One number to rank candidates: answers reproduced on trained questions and closeness on held-out ones —
    the held-out rewrites of a grounded run (its eval split's entries are trained through near-verbatim rewrites),
    else the eval split."""
    held = "paraphrase" if "paraphrase_exact_match" in metrics else "eval"
    parts = [metrics.get("train_exact_match", 0.0), metrics.get(f"{held}_exact_match", 0.0)]
    parts.append(metrics.get(f"{held}_char_f1", 0.0))
    return sum(parts) / len(parts)


def register_candidate(name: str, run_id: str, model_id: str, metrics: dict[str, float]) -> tuple[str, bool]:
    """Register the run's model as a new version; move the ``champion`` alias to it if it beats the current one.

    Returns (version, became_champion).
    """
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="kefu customer-service models fine-tuned from FAQ data")
    score = selection_score(metrics)
    version = client.create_model_version(
        name,
        source=f"{client.get_run(run_id).info.artifact_uri}/model",
        run_id=run_id,
        tags={"model_id": model_id, SCORE_TAG: f"{score:.6f}"},
    ).version
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        best = float(champion.tags.get(SCORE_TAG, "-inf"))
    except MlflowException:
        best = float("-inf")
    if score > best:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        return str(version), True
    return str(version), False
