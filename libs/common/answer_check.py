"""Is an answer grounded in its references? The share of its opening found in them, and the bar an engine is held to.

A grounded answer starts from its references; a model that drifts to another entry's memorised text ("安全组是一种虚拟
防火墙…" asked about an expired SSL certificate, with the SSL entry as the reference) does not. The opening — its
first ``OPENING_BIGRAMS`` character bigrams of letters and digits — decides, so a streaming answer is judged after a
few tokens. Measured on the tiny offline base (sample FAQ): right answers' openings are in their references (support
1.0); a wrong answer's is either wholly absent (a drift: support ~0, caught) or wholly present (retrieval picked the
wrong entry: not this check's business); a drift that shares a word or two with the reference reaches 0.25-0.5. The
trainer calibrates each engine's bar on its held-out paraphrases answered right (``calibrate_bar``, ``RIGHT_F1``),
so a base that rephrases its references is held to what its right answers reach.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

OPENING_BIGRAMS = 4
#: The highest bar calibration sets: three of the opening's four bigrams found. At 0.5, "域名到期后…" passed for a
#: question whose reference was "证书过期后…" (到期, 期后 found); no right answer of the tiny base was below 1.0.
MAX_BAR = 0.75
#: Fewer right held-out answers than this are too few to calibrate on: the check stays off (bar 0).
MIN_EVIDENCE = 5
#: A held-out answer counts as right for calibration at this character F1 with the gold answer, so a base that
#: words its answers a little differently still calibrates. Not lower: on the sample the tiny base's drifts scored
#: 0.09-0.36, but one at 0.54 ("可以。弹性公网IP可以…" shares 可以, 降配, 请确认业务负载 with its gold), which at 0.5
#: set the bar to its own support, 0.25.
RIGHT_F1 = 0.8
#: The most tokens held back: an answer that opens with whitespace or markup is judged on what these made.
MAX_HELD_TOKENS = 16
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
    # Rounded down: a bar rounded up past the support it was set from (2/3 → 0.667) would hand off those answers.
    return math.floor(min(MAX_BAR, lowest_kept) * 1000) / 1000
