"""The gate's decision, from per-prompt outcomes only (no model): export parity plus the engine's own answers.

Parity alone passes an engine that faithfully reproduces a wrong model, so the engine's decoded answers are also
scored against the gold answers with the shared measure (``libs.common.scoring``):

* **agreement**: share of prompts where the engine's greedy ids equal the trained model's (export parity);
* **regression**: every approved correction answered with its correction (``min_regression``, 1.0 by default);
* **quality drop**: the engine may not lose gold answers the trained model had right on the same prompts
  (engine exact match ≥ checkpoint exact match − ``max_quality_drop``);
* **floor**: engine exact match ≥ ``min_exact_match`` (0 by default: off unless an operator sets it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libs.common.scoring import exact_match, score
from services.builder.gate_prompts import REGRESSION, REPORTED_SPLITS
from services.builder.settings import (
    DEFAULT_MAX_QUALITY_DROP,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_MIN_EXACT_MATCH,
    DEFAULT_MIN_REGRESSION,
)

# Shares are ratios of small counts: compare with a little slack so 0.52 - 0.02 is not "less than" 0.50.
_EPS = 1e-9


@dataclass(frozen=True)
class Thresholds:
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    min_regression: float = DEFAULT_MIN_REGRESSION
    max_quality_drop: float = DEFAULT_MAX_QUALITY_DROP
    min_exact_match: float = DEFAULT_MIN_EXACT_MATCH


@dataclass(frozen=True)
class Outcome:
    """One gate prompt: what the engine and the trained model (torch) answered, and whether their ids agree."""

    question: str
    split: str
    gold: str | None
    engine: str
    torch: str
    agrees: bool


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def _scores(rows: Sequence[Outcome], prefix: str = "") -> dict[str, float]:
    """Engine and torch exact match / char F1 against gold on ``rows`` (all with a gold answer)."""
    golds = [r.gold or "" for r in rows]
    engine, torch = score([r.engine for r in rows], golds), score([r.torch for r in rows], golds)
    return {
        f"exact_match{prefix}": engine["exact_match"],
        f"char_f1{prefix}": engine["char_f1"],
        f"torch_exact_match{prefix}": torch["exact_match"],
        f"torch_char_f1{prefix}": torch["char_f1"],
    }


def failed_checks(outcomes: Sequence[Outcome], thresholds: Thresholds) -> list[str]:
    """Human-readable reasons the engine may not be served; empty when it may."""
    failed = []
    agreement = _share([o.agrees for o in outcomes])
    if agreement < thresholds.min_agreement - _EPS:
        n = sum(not o.agrees for o in outcomes)
        failed.append(
            f"agreement {agreement:.3f} < {thresholds.min_agreement:.3f}: the engine's answer differs from the "
            f"trained model's on {n} of {len(outcomes)} prompts"
        )
    fixes = [o for o in outcomes if o.split == REGRESSION and o.gold is not None]
    if fixes:  # no corrections behind this dataset yet: nothing to honour
        missed = sum(not exact_match(o.engine, o.gold or "") for o in fixes)
        got = 1 - missed / len(fixes)
        if got < thresholds.min_regression - _EPS:
            failed.append(
                f"regression exact match {got:.2f} < {thresholds.min_regression:.2f}: {missed} of {len(fixes)} "
                "corrections not answered as approved"
            )
    gold = [o for o in outcomes if o.gold is not None]
    if gold:
        engine_em = _share([bool(exact_match(o.engine, o.gold or "")) for o in gold])
        torch_em = _share([bool(exact_match(o.torch, o.gold or "")) for o in gold])
        if engine_em < torch_em - thresholds.max_quality_drop - _EPS:
            lost = sum(
                bool(exact_match(o.torch, o.gold or "")) and not exact_match(o.engine, o.gold or "") for o in gold
            )
            failed.append(
                f"exact match {engine_em:.3f} < trained model's {torch_em:.3f} - {thresholds.max_quality_drop:.3f}: "
                f"the engine lost {lost} of the trained model's right answers ({len(gold)} gold answers)"
            )
        if engine_em < thresholds.min_exact_match - _EPS:
            failed.append(
                f"exact match {engine_em:.3f} < minimum {thresholds.min_exact_match:.3f} on {len(gold)} gold answers"
            )
    return failed


def judge(outcomes: Sequence[Outcome], thresholds: Thresholds) -> dict[str, Any]:
    """The gate report's scores and decision: metrics overall and per split, ``failed_checks`` and ``passed``."""
    gold = [o for o in outcomes if o.gold is not None]
    report: dict[str, Any] = {
        "n_prompts": len(outcomes),
        "n_gold": len(gold),
        "agreement": _share([o.agrees for o in outcomes]),
        **_scores(gold),
    }
    for split in REPORTED_SPLITS:
        rows = [o for o in outcomes if o.split == split]
        report[f"n_{split}"] = len(rows)
        report[f"agreement_{split}"] = _share([o.agrees for o in rows])
        report.update(_scores([o for o in rows if o.gold is not None], f"_{split}"))
    report = {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}
    report.update(
        min_agreement=thresholds.min_agreement,
        min_regression=thresholds.min_regression,
        max_quality_drop=thresholds.max_quality_drop,
        min_exact_match=thresholds.min_exact_match,
    )
    # Kept for reading a failed build's report: which corrections the engine got wrong, and what it said instead.
    report["regression_misses"] = [
        {"question": o.question, "approved": o.gold, "engine": o.engine}
        for o in outcomes
        if o.split == REGRESSION and o.gold is not None and not exact_match(o.engine, o.gold)
    ][:5]
    report["failed_checks"] = failed_checks(outcomes, thresholds)
    report["passed"] = not report["failed_checks"]
    return report
