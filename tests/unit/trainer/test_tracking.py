from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from services.trainer.tracking import CHAMPION_ALIAS, loss_figure, register_candidate, selection_score, start_run


def test_loss_figure_has_step_and_epoch_curves() -> None:
    history = [
        {"step": 1, "loss": 7.0},
        {"step": 2, "loss": 5.0},
        {"step": 2, "eval_train_loss": 4.5, "eval_heldout_loss": 6.0},
    ]
    ax = loss_figure(history).axes[0]
    assert [line.get_label() for line in ax.lines] == [
        "train loss (per step)",
        "train loss (per epoch)",
        "heldout loss (per epoch)",
    ]


def test_selection_score() -> None:
    assert selection_score({"train_exact_match": 1.0, "eval_exact_match": 0.0, "eval_char_f1": 0.5}) == 0.5
    # A grounded run is ranked on its held-out rewrites, not on the eval split it learnt through rewrites.
    grounded = {"train_exact_match": 1.0, "eval_exact_match": 1.0, "eval_char_f1": 1.0}
    assert selection_score({**grounded, "paraphrase_exact_match": 0.5, "paraphrase_char_f1": 0.5}) == 2 / 3


def test_champion_alias_moves_only_to_a_better_candidate(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcomes = []
    for train_em in (0.5, 0.9, 0.7):
        with start_run(uri, tmp_path / "artifacts", "unit", run_name="r") as run:
            (tmp_path / "w.txt").write_text("w")
            mlflow.log_artifact(str(tmp_path / "w.txt"), artifact_path="model")
            outcomes.append(register_candidate("unit-model", run.info.run_id, "sha-x", {"train_exact_match": train_em}))
    assert outcomes == [("1", True), ("2", True), ("3", False)]
    assert str(MlflowClient().get_model_version_by_alias("unit-model", CHAMPION_ALIAS).version) == "2"
    artifact_uri = MlflowClient().get_experiment_by_name("unit").artifact_location
    assert artifact_uri.startswith((tmp_path / "artifacts").resolve().as_uri())
