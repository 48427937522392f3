"""How an answer is scored against an approved one — the same measure in the trainer, the builder's gate and the
gateway's canary comparison: exact match (whitespace collapsed) and character F1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def normalize(text: str) -> str:
    """Collapse whitespace only: casing and punctuation are part of an approved answer."""
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def char_f1(prediction: str, reference: str) -> float:
    """F1 over the multiset of non-space characters — a word-free overlap measure that suits Chinese."""
    pred = Counter(normalize(prediction).replace(" ", ""))
    ref = Counter(normalize(reference).replace(" ", ""))
    if not pred and not ref:
        return 1.0
    common = sum((pred & ref).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(pred.values()), common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def score(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean exact match and character F1 of ``predictions`` against ``references`` (0 for none)."""
    n = len(references)
    if n == 0:
        return {"exact_match": 0.0, "char_f1": 0.0, "n": 0.0}
    return {
        "exact_match": sum(map(exact_match, predictions, references)) / n,
        "char_f1": sum(map(char_f1, predictions, references)) / n,
        "n": float(n),
    }
