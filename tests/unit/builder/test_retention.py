"""Retention (services/builder/retention.py): which versions are parked so that Triton's two loaded slots are the
new version and the live one, never the new one and a superseded canary."""

from __future__ import annotations

from pathlib import Path

from services.builder.retention import park_superseded, restore, superseded


def test_versions_between_live_and_new_are_superseded() -> None:
    assert superseded([1, 2, 3], live=1, new=3) == [2]  # canary v2 would push live v1 out
    assert superseded([1, 2, 3, 4], live=1, new=4) == [2, 3]
    assert superseded([1, 2], live=1, new=2) == []  # live is already the second newest
    assert superseded([1, 2, 3, 4], live=1, new=3) == [2]  # v4: a build in flight elsewhere, not ours to park
    assert superseded([2, 3], live=None, new=3) == []  # nothing live: nothing to protect
    assert superseded([2, 3], live=1, new=3) == []  # live version not in this repository


def test_park_and_restore(tmp_path: Path) -> None:
    root = tmp_path / "kefu-chat"
    for v in (1, 2, 3, 4):
        (root / str(v)).mkdir(parents=True)
        (root / str(v) / "model.onnx").write_text(str(v))
    parked = park_superseded(tmp_path, "kefu-chat", live=1, new=4)
    assert sorted(p.name for p in root.iterdir()) == ["1", "4"]
    assert [t.name for _, t in parked] == ["kefu-chat-2", "kefu-chat-3"] and all(
        t.parent.name == ".superseded" for _, t in parked
    )
    assert [o.name for o, _ in restore(parked, only={3})] == ["3"]  # e.g. v3 was promoted meanwhile
    assert sorted(p.name for p in root.iterdir()) == ["1", "3", "4"]
    assert [o.name for o, _ in restore(parked)] == ["2"]  # v3 is back already: not moved twice
    assert (root / "2" / "model.onnx").read_text() == "2"
