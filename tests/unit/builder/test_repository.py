"""Triton repository layout: config.pbtxt contents and version numbering."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.builder import repository
from services.builder.errors import BuildError


def test_config_is_a_decoupled_dynamically_batched_python_model() -> None:
    text = repository.config_pbtxt("kefu-chat")
    assert 'name: "kefu-chat"' in text and 'backend: "python"' in text
    assert "decoupled: true" in text and "dynamic_batching" in text and "max_batch_size: 8" in text
    for name in ("question", "max_tokens", "delta", "token_count", "prompt_tokens", "finish_reason"):
        assert f'name: "{name}"' in text
    assert f'string_value: "{repository.SOURCE_ROOT}"' in text
    assert (repository.SOURCE_ROOT / "services" / "builder" / "engine.py").is_file()


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", 'q"uote'])
def test_bad_model_names(name: str) -> None:
    with pytest.raises(BuildError, match="invalid Triton model name"):
        repository.check_model_name(name)


def test_versions_follow_the_highest_existing_one(tmp_path: Path) -> None:
    root = tmp_path / "kefu-chat"
    for name in ("1", "3", ".staging-x", "notes"):
        (root / name).mkdir(parents=True)
    assert repository.versions(root) == [1, 3]
    staging = repository.new_staging_dir(tmp_path, "kefu-chat")
    (staging / "model.py").write_text("x")
    version, path = repository.publish_version(staging, tmp_path, "kefu-chat")
    assert (version, path) == (4, root / "4") and (path / "model.py").is_file() and not staging.exists()
    config = repository.write_config(tmp_path, "kefu-chat")
    assert config == root / "config.pbtxt" and "kefu-chat" in config.read_text()
    assert not [p for p in root.iterdir() if p.name.startswith(".config-")]


def test_model_template_is_copied(tmp_path: Path) -> None:
    repository.copy_model_py(tmp_path)
    assert "class TritonPythonModel" in (tmp_path / "model.py").read_text()
