"""A tiny offline model dir with a valid kefu_model.json, copied fresh for each test that breaks it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from libs.common.prompting import chat_template_sha256
from services.trainer.base_model import build_offline_base


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_offline_base(tmp_path_factory.mktemp("base") / "model")
    meta = {
        "model_id": "sha-unit",
        "dataset_id": "sha-unit-data",
        "chat_template_sha256": chat_template_sha256(AutoTokenizer.from_pretrained(path)),
        "max_length": 16,
    }
    (path / "kefu_model.json").write_text(json.dumps(meta), encoding="utf-8")
    return path


@pytest.fixture
def model_dir(base_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_dir, tmp_path / "model"))
