"""Train/eval split by a hash of the normalized question, so a question never changes sides between versions.

Adding or removing other rows does not move a question: its side depends only on its own key, the salt and the
ratio. One exception keeps tiny datasets usable: train is never empty, and eval is not empty when the ratio is
above zero and there are at least two rows; if hashing leaves a side empty, the question whose hash lies closest
to that side moves over. That choice is still deterministic for the same dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

Side = Literal["train", "eval"]


def split_score(key: str, seed: str) -> float:
    """A uniform number in [0, 1) fixed by the key and the salt."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_side(key: str, eval_ratio: float, seed: str = "kefu") -> Side:
    return "eval" if split_score(key, seed) < eval_ratio else "train"


def split_keys(keys: Sequence[str], eval_ratio: float, seed: str = "kefu") -> list[Side]:
    """The side of each key, in order, with the non-empty-sides rule of the module docstring."""
    scores = [split_score(k, seed) for k in keys]
    sides: list[Side] = ["eval" if s < eval_ratio else "train" for s in scores]
    if keys and "train" not in sides:
        sides[max(range(len(keys)), key=lambda i: (scores[i], keys[i]))] = "train"
    if eval_ratio > 0 and len(keys) >= 2 and "eval" not in sides:
        sides[min(range(len(keys)), key=lambda i: (scores[i], keys[i]))] = "eval"
    return sides
