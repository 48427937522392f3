"""Fold reviewed corrections into a dataset: pure file work, no database (``release.py`` does the bookkeeping).

New version = the parent's train + eval rows, where each correction REPLACES the row of the same normalized
question (or a near-duplicate of it) and is appended otherwise, all passed through the cleaning, PII redaction,
dedup and split ingest uses (``libs.datasets``), plus ``regression.jsonl`` (every correction so far), which the
trainer evaluates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from libs.common.knowledge import entry_id_for
from libs.datasets.cleaning import clean_pair
from libs.datasets.dedup import jaccard, question_key, shingles
from libs.datasets.errors import DatasetError
from libs.datasets.options import IngestOptions
from libs.datasets.pipeline import PreparedDataset, dataset_id_for, prepare_dataset, write_dataset
from libs.datasets.records import QAPair
from services.feedback.errors import Unusable

REGRESSION_FILE = "regression.jsonl"


@dataclass(frozen=True)
class Wording:
    """An approved similar question: the customer's ``question`` asks about knowledge entry ``entry_id``."""

    flag_id: str
    entry_id: str
    question: str


@dataclass(frozen=True)
class Correction:
    """A reviewed flag: the question as the user asked it and the answer the model should have given."""

    flag_id: str
    question: str
    answer: str


def read_rows(dataset_dir: Path) -> list[QAPair]:
    """The train + eval rows of a stored dataset version."""
    rows: list[QAPair] = []
    for name in ("train.jsonl", "eval.jsonl"):
        path = dataset_dir / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                similar = tuple(obj.get("similar") or ())
                rows.append(QAPair(obj.get("instruction", ""), obj.get("input") or "", obj.get("output", ""), similar))
    return rows


def options_of(card: dict[str, Any]) -> IngestOptions:
    """The parent's ingest options, so the new version is cleaned and split the same way.

    card.json keeps only the COUNT of sensitive words (the words themselves stay with whoever ingested), so they
    cannot be re-applied; parent rows are already masked, and corrections still get PII redaction. The field
    mapping is dropped because the records built here always use question/input/answer.
    """
    values = dict(card.get("options") or {})
    for key in ("sensitive_words", "question_field", "answer_field", "input_field", "similar_field"):
        values.pop(key, None)
    try:
        return IngestOptions(**values)
    except ValidationError:
        return IngestOptions()


def _records(pairs: Sequence[QAPair]) -> list[dict[str, Any]]:
    return [
        {"question": p.instruction, "input": p.input, "answer": p.output, "similar": list(p.similar)} for p in pairs
    ]


def _jsonl(pairs: Sequence[QAPair]) -> bytes:
    rows = ({"instruction": p.instruction, "input": p.input, "output": p.output} for p in pairs)
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def clean_corrections(corrections: Sequence[Correction], options: IngestOptions) -> list[QAPair]:
    """Corrections through the ingest pipeline on their own: the newest correction of a question wins, then
    cleaning, PII redaction and filters apply exactly as to FAQ rows. Raises if none survives."""
    latest: dict[str, QAPair] = {}
    for c in corrections:  # oldest first, so a later review of the same question overwrites an earlier one
        pair = QAPair(c.question, "", c.answer)
        key = question_key(clean_pair(pair))
        latest.pop(key, None)
        latest[key] = pair
    try:
        prepared = prepare_dataset(_records(list(latest.values())), options, source="feedback corrections")
    except DatasetError as exc:
        raise Unusable("no_usable_corrections", f"no correction survives cleaning: {exc}") from None
    return [*prepared.train, *prepared.eval]


def _replaced(row: QAPair, keys: set[str], grams: list[frozenset[str]], options: IngestOptions) -> bool:
    key = question_key(row)
    if key in keys:
        return True
    # A user's wording rarely matches the FAQ's exactly ("怎么重置密码" vs "如何重置密码？"); a near-duplicate
    # would be deduplicated against the correction later, and dedup keeps the better-FORMED row, which could be
    # the wrong answer. So the correction replaces near-duplicates too, by the same measure dedup uses.
    if not options.near_dedup:
        return False
    mine = shingles(key, options.ngram)
    return any(jaccard(mine, g) >= options.near_dup_threshold for g in grams)


def _inherit(fix: QAPair, replaced: Sequence[QAPair], options: IngestOptions) -> QAPair:
    """A correction keeps the ways customers asked the rows it replaces: their similar questions, and their own
    question when the correction words it differently."""
    key = question_key(fix)
    mine = {key}, [shingles(key, options.ngram)]
    similar = [q for row in replaced if _replaced(row, *mine, options) for q in (row.instruction, *row.similar)]
    return replace(fix, similar=tuple(dict.fromkeys([*fix.similar, *similar])))


def _with_wordings(rows: list[QAPair], wordings: Sequence[Wording]) -> tuple[list[QAPair], int, int]:
    """The rows with each wording added to the similar questions of its entry's row; how many were added, and how
    many found no row (the entry is gone from this version)."""
    at = {entry_id_for(r.instruction): i for i, r in enumerate(rows)}
    added = unplaced = 0
    for w in wordings:
        i = at.get(w.entry_id)
        if i is None:
            unplaced += 1
        elif w.question != rows[i].instruction and w.question not in rows[i].similar:
            rows[i] = replace(rows[i], similar=(*rows[i].similar, w.question))
            added += 1
    return rows, added, unplaced


def build_release(
    parent_dir: Path,
    parent_id: str,
    corrections: Sequence[Correction],
    flag_ids: Sequence[str],
    out_dir: Path,
    wordings: Sequence[Wording] = (),
) -> tuple[str, dict[str, Any]]:
    """Write the new version into ``out_dir`` (which must not exist); returns ``(dataset_id, card)``. Approved
    ``wordings`` join their entries' similar questions."""
    card_path = parent_dir / "card.json"
    parent_card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
    options = options_of(parent_card)
    fixes = clean_corrections(corrections, options) if corrections else []
    keys = {question_key(p) for p in fixes}
    grams = [shingles(k, options.ngram) for k in keys]
    base = read_rows(parent_dir)
    gone = [_replaced(row, keys, grams, options) for row in base]
    kept = [row for row, out in zip(base, gone, strict=True) if not out]
    replaced = [row for row, out in zip(base, gone, strict=True) if out]
    fixes = [_inherit(fix, replaced, options) for fix in fixes]
    rows, added, unplaced = _with_wordings([*kept, *fixes], wordings)
    try:
        prepared = prepare_dataset(_records(rows), options, source=f"feedback:{parent_id}")
    except DatasetError as exc:
        raise Unusable("bad_release", str(exc)) from None

    # The split hashes the question, so a corrected question may land in eval — where the model learns it only
    # through rewrites, never in the words the customer used, and the next agent could flag the same answer again.
    # Corrections always train verbatim; the regression set
    # (and the trainer's evaluation of it) is what checks that they were learnt.
    moved = [p for p in prepared.eval if question_key(p) in keys]
    train = (*prepared.train, *moved)
    eval_ = tuple(p for p in prepared.eval if question_key(p) not in keys)
    files = PreparedDataset(prepared.dataset_id, train, eval_, prepared.card).files()
    content_id = dataset_id_for(files["train.jsonl"], files["eval.jsonl"], options)
    regression = _jsonl(fixes)
    # The regression set is not in the pipeline's id (it hashes train/eval only); fold it in, so a release that changes
    # only regression.jsonl is still a new, content-addressed version rather than a silent no-op.
    dataset_id = "ds-" + hashlib.sha256(content_id.encode() + b"\0" + regression).hexdigest()[:16]

    card = dict(prepared.card)
    card["dataset_id"] = dataset_id
    card["counts"] = {**card["counts"], "train": len(train), "eval": len(eval_), "regression": len(fixes)}
    card["split"] = {**card["split"], "train": len(train), "eval": len(eval_), "corrections_moved_to_train": len(moved)}
    card["parent_dataset_id"] = parent_id
    card["feedback"] = {
        "flag_ids": list(flag_ids),
        "corrections": len(corrections),
        "corrections_kept": len(fixes),
        "rows_replaced": len(base) - len(kept),
        "similar_questions_added": added,  # before cleaning (which drops a wording another row has too)
        "similar_questions_unplaced": unplaced,
    }
    write_dataset(replace(prepared, dataset_id=dataset_id, train=train, eval=eval_, card=card), out_dir)
    (out_dir / REGRESSION_FILE).write_bytes(regression)
    return dataset_id, card
