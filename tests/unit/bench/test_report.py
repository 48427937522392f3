"""`kefu bench`'s report: goals judged in the right direction, every goal row shown, medians with their spread,
the hand-written analysis kept on rewrite, and the doc written only when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from kefu.bench import SAMPLE, sample_rows
from kefu.bench import run as bench_run
from kefu.bench.report import GOALS, NOTES_HEADING, table, write_doc

HOST = {"nproc": 2, "cpu": "test cpu", "memory_gib": 1.0, "os": "test os"}


def _lines(rows: list[str]) -> dict[str, str]:
    return {r.split("|")[1].strip(" `"): r for r in rows if r.startswith("| `")}


def test_goals_are_judged_by_their_direction() -> None:
    rows = table({"engine_vs_hf_decode": 3.5, "gateway_ttft_overhead_ms_p50": 4.0, "hf_generate_tok_s": 100.0})
    line = _lines(rows)
    assert "| yes |" in line["engine_vs_hf_decode"]  # ≥ 3
    assert "| NO |" in line["gateway_ttft_overhead_ms_p50"]  # ≤ 3
    assert "null" in line["concurrency16_vs_1"] and "| - |" in line["concurrency16_vs_1"]  # not measured
    assert "100.00" in line["hf_generate_tok_s"]


def test_every_goal_row_is_in_the_table_even_unmeasured() -> None:
    line = _lines(table({}))
    assert set(GOALS) <= set(line)
    assert "| ≤ 120 |" in line["pipeline_seconds"]  # the pipeline's goal is shown, not only its value


def test_a_median_of_repeats_shows_its_range_and_the_runs_are_not_repeated_below() -> None:
    results = {"packed_vs_grouped_train": 1.21, "packed_vs_grouped_train_runs": [1.3, 1.18, 1.21]}
    rows = table(results)
    assert "| 1.21 [1.18-1.30, n=3] | ≥ 1.5 | NO |" in _lines(rows)["packed_vs_grouped_train"]
    assert not any("packed_vs_grouped_train_runs" in r for r in rows)


def test_rewriting_the_doc_keeps_the_analysis(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    write_doc({"engine_vs_hf_decode": 1.0}, HOST, doc)
    doc.write_text(doc.read_text() + f"\n{NOTES_HEADING}\n\nwhy the ratio is low\n")
    write_doc({"engine_vs_hf_decode": 4.0}, HOST, doc)
    text = doc.read_text()
    assert "| 4.00 |" in text and "| 1.00 |" not in text
    assert text.count(NOTES_HEADING) == 1 and text.rstrip().endswith("why the ratio is low")


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """``run_all`` replaced by a recorder: these tests are about what ``run_bench`` writes, not about measuring."""
    asked: list[set[str]] = []

    async def fake_run_all(parts, say, *, repeats):  # type: ignore[no-untyped-def]
        asked.append(set(parts))
        return {"engine_vs_hf_decode": 3.5}

    monkeypatch.setattr(bench_run, "run_all", fake_run_all)
    monkeypatch.setattr(bench_run, "machine", lambda: HOST)
    return asked


def test_the_doc_is_written_only_when_asked(tmp_path: Path, measured: list[set[str]]) -> None:
    doc = tmp_path / "benchmarks.md"
    bench_run.run_bench(False, False, say=lambda _: None, doc=doc)
    assert not doc.exists() and measured == [{"serving", "train", "retrieval"}]
    bench_run.run_bench(False, True, write=True, say=lambda _: None, doc=doc, only=["train"])
    assert "| 3.50 |" in doc.read_text() and measured[-1] == {"train"}


def test_writing_without_a_docs_folder_asks_for_a_path(tmp_path: Path, measured: list[set[str]]) -> None:
    with pytest.raises(ValueError, match="--doc"):
        bench_run.run_bench(False, False, write=True, doc=tmp_path / "no-such-dir" / "benchmarks.md")
    with pytest.raises(ValueError, match="unknown benchmark part"):
        bench_run.run_bench(False, False, only=["everything"])
    assert measured == []


def test_the_package_carries_the_sample_it_measures_on() -> None:
    checkout = Path(__file__).resolve().parents[3] / "data" / "sample" / "cloudmax_faq.jsonl"
    assert SAMPLE.read_bytes() == checkout.read_bytes() and len(sample_rows()) > 50
