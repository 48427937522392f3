"""The FAQ knowledge base: entries with stable ids, versioned with each dataset, changed live by approved corrections.

A dataset version's ``knowledge.jsonl`` holds every cleaned Q-A row (train and eval) as an entry. An entry's id is
derived from its normalized question, so the same question keeps its id across versions: a correction that
REPLACES an entry's answer keeps the id, and the next dataset version (which carries the corrected row) agrees.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

KNOWLEDGE_FILE = "knowledge.jsonl"
_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)

Action = Literal["add", "replace", "retire", "similar_add", "similar_remove"]
#: Live changes of one wording of an entry (the update's ``question`` is the wording), not of the entry's text.
SIMILAR_ACTIONS = ("similar_add", "similar_remove")


@dataclass(frozen=True)
class Entry:
    entry_id: str
    question: str
    answer: str
    #: Other wordings of the question (相似问) the FAQ's owners collected; retrieval matches them like the question.
    similar: tuple[str, ...] = ()

    @property
    def questions(self) -> tuple[str, ...]:
        """The question first, then its similar wordings."""
        return (self.question, *self.similar)


def entry_id_for(question: str) -> str:
    """Stable id of the entry a question heads: case, width, spaces and punctuation do not change it."""
    key = _NOISE.sub("", unicodedata.normalize("NFKC", question).lower())
    return "kb-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def entry(question: str, answer: str, similar: Sequence[str] = ()) -> Entry:
    return Entry(entry_id_for(question), question.strip(), answer.strip(), tuple(similar))


def entries_from_rows(rows: Iterable[tuple[str, str] | tuple[str, str, Sequence[str]]]) -> list[Entry]:
    """Entries from (question, answer[, similar questions]) rows; a later row with the same entry id wins."""
    found: dict[str, Entry] = {}
    for row in rows:
        e = entry(*row)
        found.pop(e.entry_id, None)
        found[e.entry_id] = e
    return list(found.values())


def _row(e: Entry) -> dict[str, object]:
    row = asdict(e)
    if not e.similar:  # an entry without similar questions is written in the three fields it always had
        del row["similar"]
    return row


def to_jsonl(entries: Sequence[Entry]) -> bytes:
    return "".join(json.dumps(_row(e), ensure_ascii=False) + "\n" for e in entries).encode("utf-8")


def read_entries(path: Path) -> list[Entry]:
    """Entries of a ``knowledge.jsonl``; a line without id/question/answer is an error naming it."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        obj = json.loads(line)
        if not (obj.get("entry_id") and obj.get("question") and obj.get("answer")):
            raise ValueError(f"{path}:{n}: a knowledge entry needs 'entry_id', 'question' and 'answer'")
        similar = obj.get("similar") or []
        if not (isinstance(similar, list) and all(isinstance(q, str) for q in similar)):
            raise ValueError(f"{path}:{n}: 'similar' must be a list of questions")
        out.append(Entry(obj["entry_id"], obj["question"], obj["answer"], tuple(similar)))
    return out


def with_wording(entry: Entry, action: str, wording: str) -> Entry:
    """``entry`` with ``wording`` added to its similar questions (``similar_add``; unchanged if it already asks it)
    or taken off them (``similar_remove``)."""
    if action == "similar_add":
        return entry if wording in entry.questions else replace(entry, similar=(*entry.similar, wording))
    return replace(entry, similar=tuple(q for q in entry.similar if q != wording))


def after_change(before: Entry | None, action: str, changed: Entry) -> Entry | None:
    """The entry under ``changed.entry_id`` after one live change — the one rule every server of retrieval and the
    feedback service apply. add/replace: ``changed`` (without similar questions it keeps those of ``before``: a
    correction changes the answer, the ways customers ask stay); retire: None; similar_add/similar_remove: ``before``
    with one wording (``changed.question``) added or taken off, None when there is no entry to change."""
    if action == "retire":
        return None
    if action in SIMILAR_ACTIONS:
        return with_wording(before, action, changed.question) if before is not None else None
    if not changed.similar and before is not None:
        return replace(changed, similar=before.similar)
    return changed


def apply_update(entries: Sequence[Entry], action: Action, changed: Entry) -> list[Entry]:
    """The entries after one live change (``after_change``), a replaced entry at its old place, a new one last."""
    at = next((i for i, e in enumerate(entries) if e.entry_id == changed.entry_id), None)
    after = after_change(entries[at] if at is not None else None, action, changed)
    if at is None:
        return [*entries, after] if after is not None else list(entries)
    return [*entries[:at], *([after] if after is not None else []), *entries[at + 1 :]]


def load_knowledge(dataset_dir: Path) -> list[Entry]:
    """A dataset version's knowledge base; versions written before it existed derive it from train + eval."""
    dataset_dir = Path(dataset_dir)
    if (dataset_dir / KNOWLEDGE_FILE).is_file():
        return read_entries(dataset_dir / KNOWLEDGE_FILE)
    rows: list[tuple[str, str, Sequence[str]]] = []
    for name in ("train.jsonl", "eval.jsonl"):
        path = dataset_dir / name
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    obj = json.loads(line)
                    if obj.get("instruction") and obj.get("output"):
                        rows.append((obj["instruction"], obj["output"], obj.get("similar") or ()))
    return entries_from_rows(rows)
