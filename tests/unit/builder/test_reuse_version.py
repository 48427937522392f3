"""A build retried after its version was published reuses that version (services/builder/build.find_published)
instead of adding a second copy of the same engine to the Triton repository."""

from __future__ import annotations

import json
from pathlib import Path

from libs.common.artifacts import ENGINE_META
from services.builder.build import find_published


def _version(repo: Path, number: int, **meta: object) -> Path:
    folder = repo / "kefu-chat" / str(number)
    folder.mkdir(parents=True)
    (folder / ENGINE_META).write_text(json.dumps(meta), encoding="utf-8")
    return folder


def test_finds_the_published_version_of_this_model_and_precision(tmp_path: Path) -> None:
    _version(tmp_path, 1, model_id="m-old", dataset_id="d0", precision="fp32", engine_id="sha-old", quality={})
    _version(tmp_path, 2, model_id="m-new", dataset_id="d1", precision="int8", engine_id="sha-int8", quality={})
    v3 = _version(
        tmp_path, 3, model_id="m-new", dataset_id="d1", precision="fp32", engine_id="sha-a", quality={"agreement": 1.0}
    )
    (tmp_path / "kefu-chat" / ".staging-x").mkdir()  # a half-built attempt: never a version
    found = find_published(tmp_path, "kefu-chat", "m-new", "fp32")
    assert found is not None
    assert (found.engine_id, found.triton_version, found.version_dir) == ("sha-a", 3, v3)
    assert found.dataset_id == "d1" and found.quality == {"agreement": 1.0} and found.passed_gate


def test_none_when_the_model_was_never_published(tmp_path: Path) -> None:
    assert find_published(tmp_path, "kefu-chat", "m-new", "fp32") is None
    _version(tmp_path, 1, model_id="m-old", dataset_id="d0", precision="fp32", engine_id="sha-old")
    (tmp_path / "kefu-chat" / "2").mkdir()  # no engine meta (foreign or broken folder): not ours
    assert find_published(tmp_path, "kefu-chat", "m-new", "fp32") is None
