"""``kefu ingest`` through typer's CliRunner on a tiny app built with ``register``."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from services.ingest.cli import register

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample" / "cloudmax_faq.jsonl"


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """kefu (test app)."""

    register(app)
    return app


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(make_app(), ["ingest", *args])
    return result.exit_code, result.stdout, result.stderr


def test_offline_ingest_prints_the_id_last_and_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    code, stdout, stderr = run(str(SAMPLE), "--out", str(out), "--offline")
    assert code == 0, stderr
    dataset_id = stdout.strip().splitlines()[-1]
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    assert card["dataset_id"] == dataset_id and dataset_id.startswith("ds-")
    assert card["source"] == str(SAMPLE)
    assert (out / "train.jsonl").stat().st_size > 0
    assert f"wrote {out}" in stdout


def test_same_input_and_options_give_the_same_id(tmp_path: Path) -> None:
    ids = {run(str(SAMPLE), "--out", str(tmp_path / name), "--offline")[1].splitlines()[-1] for name in "ab"}
    assert len(ids) == 1
    other = run(str(SAMPLE), "--out", str(tmp_path / "c"), "--offline", "--eval-ratio", "0.2")[1].splitlines()[-1]
    assert other not in ids


def test_default_out_is_named_after_the_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run(str(SAMPLE), "--offline")
    assert code == 0
    assert (tmp_path / "out" / "datasets" / stdout.splitlines()[-1] / "card.json").is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("broken.json", "broken.json: invalid JSON at line 3"),
        ("broken_line.jsonl", "broken_line.jsonl: line 3: invalid JSON"),
        ("wrong_columns.csv", "fields found: '标题', '内容', '分类'"),
        ("empty.jsonl", "empty.jsonl: file is empty"),
        ("missing.csv", "missing.csv: file not found"),
    ],
)
def test_bad_input_exits_2_with_one_message_and_writes_nothing(
    fixtures: Path, tmp_path: Path, name: str, message: str
) -> None:
    out = tmp_path / "ds"
    code, stdout, stderr = run(str(fixtures / name), "--out", str(out), "--offline")
    assert code == 2
    assert stderr.startswith("error: ") and message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr + stdout
    assert list(tmp_path.iterdir()) == []


def test_invalid_options_are_a_clean_error(tmp_path: Path) -> None:
    code, _, stderr = run(str(SAMPLE), "--out", str(tmp_path / "ds"), "--offline", "--eval-ratio", "1.5")
    assert code == 2 and stderr.startswith("error: invalid options: eval_ratio")


def test_field_mapping_options(fixtures: Path, tmp_path: Path) -> None:
    src = fixtures / "wrong_columns.csv"
    code, stdout, stderr = run(
        str(src), "--out", str(tmp_path / "ds"), "--offline", "--question-field", "标题", "--answer-field", "内容"
    )
    assert code == 0, stderr
    assert "read 1, kept 1" in stdout


def test_sensitive_words_file_and_options_file(fixtures: Path, tmp_path: Path) -> None:
    src = tmp_path / "faq.jsonl"
    src.write_text(
        '{"question": "天穹计划是什么？", "answer": "这是ProjectX的内部名称。"}\n'
        '{"question": "如何注册？", "answer": "发邮件到 support@cloudmax.com。"}\n',
        encoding="utf-8",
    )
    options = tmp_path / "options.yaml"
    options.write_text("eval_ratio: 0\nkeep_email_domains: [cloudmax.com]\n", encoding="utf-8")
    out = tmp_path / "ds"
    code, _, stderr = run(
        str(src), "--out", str(out), "--offline", "--options", str(options),
        "--sensitive-words", str(fixtures / "sensitive_words.txt"),
    )  # fmt: skip
    assert code == 0, stderr
    train = (out / "train.jsonl").read_text(encoding="utf-8")
    assert "[SENSITIVE]是什么" in train and "这是[SENSITIVE]的内部名称" in train
    assert "support@cloudmax.com" in train


def test_without_offline_the_dataset_is_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    fake = types.ModuleType("services.ingest.publish")
    fake.publish_dataset = lambda out_dir, dataset_id, card, source: calls.append((out_dir, dataset_id, card, source))
    monkeypatch.setitem(sys.modules, "services.ingest.publish", fake)
    out = tmp_path / "ds"
    code, stdout, stderr = run(str(SAMPLE), "--out", str(out))
    assert code == 0, stderr
    ((out_dir, dataset_id, card, source),) = calls
    assert out_dir == out and dataset_id == stdout.splitlines()[-1] == card["dataset_id"]
    assert source == str(SAMPLE)


def test_offline_never_imports_the_publisher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "services.ingest.publish", None)  # importing it would raise ImportError
    code, _, stderr = run(str(SAMPLE), "--out", str(tmp_path / "ds"), "--offline")
    assert code == 0, stderr
