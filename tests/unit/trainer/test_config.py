from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.trainer.config import TrainConfig


def test_defaults_are_the_tiny_base_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.scheduler, cfg.warmup_steps) == (None, 8, 1e-3, "cosine", 10)
    assert (cfg.passes_per_entry, cfg.min_examples, cfg.grounded, cfg.retrieval_k) == (40, 2400, True, 1)
    assert cfg.max_length is None and not cfg.lora


def test_from_yaml_and_cli_overrides(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 5\nlr: 0.0002\nlora: true\nlora_target_modules: [q_proj, v_proj]\n", encoding="utf-8")
    cfg = TrainConfig.from_yaml(path)
    assert (cfg.epochs, cfg.lr, cfg.lora, cfg.lora_target_modules) == (5, 2e-4, True, ["q_proj", "v_proj"])
    over = cfg.with_overrides(epochs=7, lr=None, max_length=256)
    assert (over.epochs, over.lr, over.max_length) == (7, 2e-4, 256)


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert TrainConfig.from_yaml(path) == TrainConfig()


@pytest.mark.parametrize("text", ["epoch: 3\n", "lr: -1\n", "batch_size: 0\n"])
def test_typos_and_bad_values_are_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError):
        TrainConfig.from_yaml(path)


def test_non_mapping_yaml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_yaml(path)
