"""Serving telemetry into training: how the trainer uses the ``serving_profile.json`` a dataset version carries.

Feedback's release writes the profile (services/feedback/serving_profile.py) from the answer log, so the trainer
reads only its dataset dir. Two choices follow real traffic, and the model's provenance records both (with the
profile's hash and window), whether applied or not and why:

* **max_length** (the prompt+answer budget of training, and the builder's default generation budget). Customers
  control only the question: references and answers come from the FAQ. So the budget is the dataset's own p99
  sequence length plus the tokens by which the customers' p99 question is longer than the training questions' p99
  (characters, converted at the training questions' own tokens per character: the profile's token counts came from
  the previous model's tokenizer, which the next base need not share). Clamped: never below the dataset's need (a
  shorter customer question must not truncate training rows) and at most double it (a few pasted logs must not
  double every packed sequence).
* **hand-off calibration**: the questions of the unanswered clusters join the built-in out-of-scope probes that
  set the hand-off threshold's lower bound, so what customers really asked and the bot could not answer weighs in.
  A cluster only agents flagged (answered, just wrongly) is not out of scope; nor is one whose wording is now an
  FAQ entry (a correction answered it in this very version). Both are skipped and recorded as such.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from libs.common.knowledge import Entry, entry_id_for

PROFILE_FILE = "serving_profile.json"  # written by services/feedback/serving_profile.py
SCHEMA_VERSION = 1
MIN_ANSWERS = 30  # fewer answers in the window: no percentile worth tuning to
PROBES_PER_CLUSTER = 3  # distinct wordings of one cluster used as probes
MAX_PROBES = 30  # as many as the built-in probes: real traffic weighs in, it does not take over


def read(dataset_dir: Path) -> dict[str, Any] | None:
    """The dataset's serving profile, or None (an ingested version has seen no traffic yet)."""
    path = Path(dataset_dir) / PROFILE_FILE
    if not path.is_file():
        return None
    profile = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(profile, dict) or profile.get("schema_version", 0) > SCHEMA_VERSION:
        raise ValueError(f"{path}: not a serving profile this trainer understands (schema {SCHEMA_VERSION})")
    profile["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return profile


def _p99(values: Sequence[int]) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(0.99 * len(ordered))) - 1]


def length_budget(
    profile: dict[str, Any] | None,
    sequence_lengths: Sequence[int],
    questions: Sequence[str],
    count_tokens: Callable[[str], int],
    *,
    given: bool = False,
) -> tuple[int | None, dict[str, Any]]:
    """(sequence length to budget for, or None: the dataset's own p99 stands; what was decided and from what).
    ``given``: a max_length was set (config or caller), which wins over the profile."""
    if profile is None:
        return None, {"applied": False, "reason": "no serving profile"}
    if given:
        return None, {"applied": False, "reason": "max_length given explicitly"}
    observed = (profile.get("question_chars") or {}).get("p99")
    if profile.get("answers", 0) < MIN_ANSWERS or observed is None:
        return None, {"applied": False, "reason": f"fewer than {MIN_ANSWERS} answers in the profile's window"}
    if not sequence_lengths or not questions:
        return None, {"applied": False, "reason": "no training rows to measure"}
    chars = [len(q) for q in questions]
    tokens_per_char = sum(count_tokens(q) for q in questions) / max(1, sum(chars))
    dataset_p99, trained_question_p99 = _p99(sequence_lengths), _p99(chars)
    wanted = math.ceil(max(0, observed - trained_question_p99) * tokens_per_char)
    extra = min(wanted, dataset_p99)
    return dataset_p99 + extra, {
        "applied": True,
        "rule": "dataset p99 sequence + (served p99 question - trained p99 question) chars x tokens/char, "
        "clamped to [0, dataset p99]",
        "served_question_chars_p99": observed,
        "trained_question_chars_p99": trained_question_p99,
        "tokens_per_char": round(tokens_per_char, 4),
        "dataset_sequence_p99": dataset_p99,
        "extra_tokens": extra,
        "clamped": extra != wanted,
        "sequence_budget": dataset_p99 + extra,
    }


def handoff_probes(profile: dict[str, Any] | None, entries: Sequence[Entry]) -> tuple[list[str], dict[str, Any]]:
    """(extra out-of-scope probes from the unanswered clusters, which clusters were used or skipped and why)."""
    clusters = (profile or {}).get("unanswered_clusters") or []
    known = {e.entry_id for e in entries}
    probes: list[str] = []
    used, skipped = [], []
    for cluster in clusters:
        wordings = list(dict.fromkeys(w for w in [cluster.get("question"), *cluster.get("examples", [])] if w))
        summary = {"question": cluster.get("question"), "count": cluster.get("count", 0)}
        if not cluster.get("handed_off"):
            skipped.append({**summary, "reason": "flagged only: answered (wrongly), not out of scope"})
        elif any(entry_id_for(w) in known for w in wordings):
            skipped.append({**summary, "reason": "now an FAQ entry of this version"})
        elif len(probes) < MAX_PROBES:
            take = wordings[: min(PROBES_PER_CLUSTER, MAX_PROBES - len(probes))]
            probes.extend(take)
            used.append({**summary, "probes": len(take)})
        else:
            skipped.append({**summary, "reason": f"probe cap {MAX_PROBES} reached"})
    return probes, {"applied": bool(probes), "probes": len(probes), "used": used, "skipped": skipped}


def provenance(
    profile: dict[str, Any] | None, length: dict[str, Any], probes: dict[str, Any], max_length: int
) -> dict[str, Any]:
    """What the model records of the traffic it was tuned for (kefu_model.json ``serving_profile``, MLflow)."""
    if profile is None:
        return {"file": None, "reason": f"no {PROFILE_FILE} in the dataset (no traffic yet)", "max_length": length}
    keys = ("window_start", "window_end", "answers", "handoff_rate", "question_chars", "sequence_tokens")
    return {
        "file": PROFILE_FILE,
        "sha256": profile.get("sha256"),
        **{k: profile.get(k) for k in keys},
        "max_length": {**length, "chosen": max_length},
        "handoff_probes": probes,
    }
