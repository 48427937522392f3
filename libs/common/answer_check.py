"""Is an answer grounded in its references? The share of its opening found in them, and the bar an engine is held to.

A grounded answer starts from its references; a model that drifts to another entry's memorised text ("安全组是一种虚拟
防火墙…" asked about an expired SSL certificate, with the SSL entry as the reference) does not. The opening — its
first ``OPENING_BIGRAMS`` character bigrams of letters and digits — decides, so a streaming answer is judged after a
few tokens. Measured on the tiny offline base (sample FAQ): right answers' openings are in their references (support
1.0); a wrong answer's is either wholly absent (a drift: support ~0, caught) or wholly present (retrieval picked the
wrong entry: not this check's business). The trainer calibrates each engine's bar on its held-out paraphrases
(``calibrate_bar``), so a base that rephrases its references is held to what its right answers reach.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

OPENING_BIGRAMS = 4
#: The highest bar calibration sets: three of the opening's four bigrams found. At 0.5, "域名到期后…" passed for a
#: question whose reference was "证书过期后…" (到期, 期后 found); no right answer of the tiny base was below 1.0.
MAX_BAR = 0.75
#: Fewer right held-out answers than this are too few to calibrate on: the check stays off (bar 0).
MIN_EVIDENCE = 5
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def _bigrams(text: str) -> list[str]:
    chars = _NOT_WORD.sub("", text.lower())
    return [chars[i : i + 2] for i in range(len(chars) - 1)]


def judged(answer: str, bigrams: int = OPENING_BIGRAMS) -> bool:
    """Whether ``answer`` (so far) is long enough to be judged."""
    return len(_bigrams(answer)) >= bigrams


def opening_support(answer: str, references: str, bigrams: int = OPENING_BIGRAMS) -> float | None:
    """Share of the answer's first ``bigrams`` character bigrams found in ``references``: 0 for an answer without a
    letter or digit (blank lines are no answer), None for a single one (too short to judge, e.g. "是。")."""
    if not _NOT_WORD.sub("", answer):
        return 0.0
    opening = _bigrams(answer)[:bigrams]
    if not opening:
        return None
    known = set(_bigrams(references))
    return sum(b in known for b in opening) / len(opening)


def calibrate_bar(right_supports: Sequence[float], keep: float = 0.99) -> float:
    """The bar that keeps ``keep`` of the right answers (their opening supports), at most ``MAX_BAR``; 0 (no check)
    with fewer than ``MIN_EVIDENCE`` right answers to go by."""
    if len(right_supports) < MIN_EVIDENCE:
        return 0.0
    ordered = sorted(right_supports)
    lowest_kept = ordered[int((1 - keep) * len(ordered))]
    return round(min(MAX_BAR, lowest_kept), 3)
