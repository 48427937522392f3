"""Question drift, pure: does the last window of customer questions still look like what the engine was trained on?

Two samples are compared on two measures. **Retrieval confidence** (how much of a question the best knowledge
entry accounts for, ``libs.common.retrieval``). The reference is NOT the training questions as they are — each
finds its own entry and scores ~1.0, so every real customer would look drifted — but each training question
scored against the knowledge base without its own entry (leave-one-out). Measured on the bundled CloudMax sample
(79 training questions): leave-one-out mean 0.40 against 0.44 for the 40 in-scope customer wordings of
``data/sample/cloudmax_questions.jsonl`` (KS 0.06, p 0.76: the same distribution), while rule-based rewrites of
the training questions (the hand-off calibration's) score 0.68 and would flag that in-scope traffic as drift
(KS 0.69, p 1e-12). It is tested one-sided (customers *lower* than the reference), since customers matching the
FAQ better is no alarm. **Question length** (characters): the training questions as they are, two-sided (much
longer or shorter questions than the model was trained on both hurt a tiny model). Plus the **share of questions
far from every entry** (confidence below ``far_confidence``) against the same share in the reference.

A KS p-value alone is not the alarm: with thousands of questions a negligible shift is "significant", so the
statistic (the largest CDF gap) must also reach ``min_statistic``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

from libs.common.folding import FILLERS
from libs.common.terms import tokens


@dataclass(frozen=True)
class Thresholds:
    max_p_value: float = 0.01
    min_statistic: float = 0.2
    far_confidence: float = 0.2  # the gateway's unseen-topic bucket (metrics, alerts) uses the same bar
    max_far_increase: float = 0.15  # absolute: 0.05 → 0.20 of questions far from every entry crosses
    min_questions: int = 30  # fewer customer questions in the window: reported, never judged


@dataclass(frozen=True)
class Comparison:
    figures: dict[str, dict[str, float]]
    crossed: list[str] = field(default_factory=list)  # one readable line per crossed threshold
    judged: bool = True

    @property
    def drifted(self) -> bool:
        return bool(self.crossed)

    def to_json(self) -> dict[str, Any]:
        return {"figures": self.figures, "crossed": self.crossed, "judged": self.judged, "drifted": self.drifted}


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, mean and the 10/50/90th percentiles (empty sample: n = 0 only)."""
    if not values:
        return {"n": 0.0}
    arr = np.asarray(values, dtype=float)
    p10, p50, p90 = np.quantile(arr, [0.1, 0.5, 0.9])
    return {"n": float(arr.size), "mean": float(arr.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}


def _ks(current: Sequence[float], reference: Sequence[float], alternative: str) -> dict[str, float]:
    if not current or not reference:
        return {}
    result = ks_2samp(current, reference, alternative=alternative)
    return {"ks_statistic": float(result.statistic), "ks_p_value": float(result.pvalue)}


def compare(
    current_confidence: Sequence[float],
    reference_confidence: Sequence[float],
    current_length: Sequence[float],
    reference_length: Sequence[float],
    thresholds: Thresholds = Thresholds(),
) -> Comparison:
    """Figures of both samples and the thresholds the current window crosses."""
    # 'greater': the current sample's CDF lies above the reference's somewhere, i.e. its confidences are lower.
    confidence = {
        **{f"current_{k}": v for k, v in summary(current_confidence).items()},
        **{f"reference_{k}": v for k, v in summary(reference_confidence).items()},
        **_ks(current_confidence, reference_confidence, "greater"),
    }
    length = {
        **{f"current_{k}": v for k, v in summary(current_length).items()},
        **{f"reference_{k}": v for k, v in summary(reference_length).items()},
        **_ks(current_length, reference_length, "two-sided"),
    }
    far_now = far_share(current_confidence, thresholds.far_confidence)
    far_ref = far_share(reference_confidence, thresholds.far_confidence)
    far = {"current": far_now, "reference": far_ref, "increase": far_now - far_ref, "below": thresholds.far_confidence}
    figures = {"confidence": confidence, "length": length, "far_share": far}
    if len(current_confidence) < thresholds.min_questions or not reference_confidence:
        return Comparison(figures, judged=False)
    crossed = []
    for name, fig in (("retrieval confidence", confidence), ("question length", length)):
        stat, p = fig.get("ks_statistic", 0.0), fig.get("ks_p_value", 1.0)
        if p < thresholds.max_p_value and stat >= thresholds.min_statistic:
            crossed.append(
                f"{name}: KS {stat:.3f} ≥ {thresholds.min_statistic} with p {p:.2g} < {thresholds.max_p_value}"
            )
    if far["increase"] > thresholds.max_far_increase:
        crossed.append(
            f"far from every entry: {far_now:.1%} vs {far_ref:.1%} in the reference "
            f"(+{far['increase']:.1%} > +{thresholds.max_far_increase:.0%})"
        )
    return Comparison(figures, crossed)


def far_share(confidences: Sequence[float], below: float) -> float:
    return sum(c < below for c in confidences) / len(confidences) if confidences else 0.0


# --- clusters of questions the bot could not answer, for agents ------------------------------------------------


def content_tokens(question: str) -> frozenset[str]:
    """The retriever's own n-grams (synonyms folded) without filler words: what a question is about."""
    return frozenset(t for t in tokens(question) if t not in FILLERS)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass
class Cluster:
    question: str  # the representative: the most frequent wording (first seen on ties)
    members: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, examples: int = 5) -> dict[str, Any]:
        distinct = list(dict.fromkeys(m["question"] for m in self.members))
        return {
            "question": self.question,
            "count": len(self.members),
            "handed_off": sum(bool(m.get("handoff")) for m in self.members),
            "flagged": sum(bool(m.get("flagged")) for m in self.members),
            "examples": distinct[:examples],
            "answer_ids": [m["answer_id"] for m in self.members][:20],
            "last_seen": max((str(m.get("created_at") or "") for m in self.members), default=""),
        }


def cluster_questions(items: Sequence[dict[str, Any]], *, min_similarity: float = 0.35) -> list[Cluster]:
    """Greedy leader clustering: the most frequent wordings lead, each question joins the first cluster whose
    leader shares ``min_similarity`` (Jaccard) of its content n-grams, else starts one. Largest clusters first.

    ``items``: dicts with at least ``answer_id`` and ``question`` (plus ``handoff``/``flagged``/``created_at``).
    Quadratic in clusters, which is fine for a day's hand-offs (hundreds); no model, nothing to download.
    """
    counts: dict[str, int] = {}
    for item in items:
        counts[item["question"].strip()] = counts.get(item["question"].strip(), 0) + 1
    order = sorted(items, key=lambda it: -counts[it["question"].strip()])
    leaders: list[tuple[frozenset[str], Cluster]] = []
    for item in order:
        text = item["question"].strip()
        grams = content_tokens(text)
        home = next((c for g, c in leaders if _jaccard(g, grams) >= min_similarity), None)
        if home is None:
            home = Cluster(text)
            leaders.append((grams, home))
        home.members.append(item)
    return sorted((c for _, c in leaders), key=lambda c: -len(c.members))
