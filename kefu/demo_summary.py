"""The table ``kefu demo`` prints at the end: what the loop reached and what it measured (docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any


def _or_dash(value: object) -> object:
    return "-" if value is None else value


def print_summary(summary: dict[str, Any], say) -> None:  # type: ignore[no-untyped-def]
    rows = [
        ("stages reached", " → ".join(summary.get("stages", []))),
        ("dataset", summary.get("dataset_id", "-")),
        ("model", summary.get("model_id", "-")),
        ("engine", summary.get("engine_id", "-")),
        ("train exact match", summary.get("train_exact_match", "-")),
        ("engine vs trained model agreement", summary.get("agreement", "-")),
        ("eval exact match (FAQ wording never trained)", summary.get("eval_exact_match", "-")),
        ("paraphrases answered right (demo questions)", summary.get("paraphrase_accuracy", "-")),
        ("follow-ups answered right (two-turn conversations)", summary.get("two_turn_accuracy", "-")),
        ("  the same follow-ups asked alone", summary.get("followup_alone_accuracy", "-")),
        ("in-scope handed to a human", summary.get("handoff_in_scope", "-")),
        ("out-of-scope handed to a human", summary.get("handoff_out_of_scope", "-")),
        ("approval → correction served (no retraining), s", summary.get("live_fix_seconds", "-")),
        ("  served as", summary.get("live_fix_by") or "-"),
        ("approval → attached wording answered right, s", _or_dash((summary.get("attach") or {}).get("seconds"))),
        ("  attached wording right after retraining", summary.get("attached_learned", "-")),
        ("pipeline seconds (dataset.ready → deployment.live)", summary.get("pipeline_seconds", "-")),
        ("feedback seconds (flag → corrected engine live)", summary.get("feedback_seconds", "-")),
        ("corrected answer learned", summary.get("feedback_fixed", "-")),
        ("not built yet", ", ".join(summary.get("missing", [])) or "nothing"),
        ("artifacts", summary.get("home", "-")),
    ]
    width = max(len(k) for k, _ in rows)
    say("")
    for k, v in rows:
        say(f"{k:<{width}}  {v}")
