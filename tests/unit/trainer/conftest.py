from __future__ import annotations

from pathlib import Path

import pytest

from services.trainer.base_model import build_offline_base

FIXTURE_DATASET = Path(__file__).resolve().parents[2] / "fixtures" / "trainer" / "faq"


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_offline_base(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def tokenizer(base_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_dir)
