"""`kefu bench`'s report: goals judged in the right direction, and the hand-written analysis kept on rewrite."""

from __future__ import annotations

from pathlib import Path

from kefu.bench import NOTES_HEADING, table, write_doc

HOST = {"nproc": 2, "cpu": "test cpu", "memory_gib": 1.0, "os": "test os"}


def test_goals_are_judged_by_their_direction() -> None:
    rows = table({"engine_vs_hf_decode": 3.5, "gateway_ttft_overhead_ms_p50": 4.0, "hf_generate_tok_s": 100.0})
    line = {r.split("|")[1].strip(" `"): r for r in rows if r.startswith("| `")}
    assert "| yes |" in line["engine_vs_hf_decode"]  # ≥ 3
    assert "| NO |" in line["gateway_ttft_overhead_ms_p50"]  # ≤ 3
    assert "null" in line["concurrency16_vs_1"] and "| - |" in line["concurrency16_vs_1"]  # not measured
    assert "100.00" in line["hf_generate_tok_s"]


def test_rewriting_the_doc_keeps_the_analysis(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    write_doc({"engine_vs_hf_decode": 1.0}, HOST, doc)
    doc.write_text(doc.read_text() + f"\n{NOTES_HEADING}\n\nwhy the ratio is low\n")
    write_doc({"engine_vs_hf_decode": 4.0}, HOST, doc)
    text = doc.read_text()
    assert "| 4.00 |" in text and "| 1.00 |" not in text
    assert text.count(NOTES_HEADING) == 1 and text.rstrip().endswith("why the ratio is low")
