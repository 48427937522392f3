"""Raw records -> a prepared dataset (pure), and the atomic write of that dataset to a directory.

Order matters: fields are mapped, cleaned, PII-redacted, filtered, deduplicated (so two rows differing only by a
phone number are duplicates) and then split. The dataset id hashes the exact bytes of train.jsonl and eval.jsonl
with the options and the pipeline version; the card (which names the source) is not hashed, so the same content
read from a CSV or from PostgreSQL gets the same id.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

from libs.common import knowledge, retrieval
from libs.common.knowledge import KNOWLEDGE_FILE, entry_id_for
from libs.common.pii import Redactor
from libs.datasets.cleaning import canonical_key, clean_pair, drop_shared_similar, filter_pair, keep_similar
from libs.datasets.dedup import dedup, question_key
from libs.datasets.errors import DatasetError
from libs.datasets.options import IngestOptions
from libs.datasets.records import QAPair, display_source, extract_pair, resolve_mapping, similar_key
from libs.datasets.split import split_keys

# Bump when cleaning/redaction/dedup rules change, so the same input yields a new dataset id.
PIPELINE_VERSION = 3  # 2: every version also carries its knowledge base; 3: and the rows' similar questions
DATASET_FILES = ("train.jsonl", "eval.jsonl", "card.json", KNOWLEDGE_FILE)


class SupportsEncode(Protocol):
    """A tokenizer: HF ``PreTrainedTokenizer``, ``tokenizers.Tokenizer`` or anything with ``encode(text)``."""

    def encode(self, text: str, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class PreparedDataset:
    dataset_id: str
    train: tuple[QAPair, ...]
    eval: tuple[QAPair, ...]
    card: dict[str, Any]

    def files(self) -> dict[str, bytes]:
        """The exact bytes of each file ``write_dataset`` writes."""
        card = json.dumps(self.card, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
        return {
            "train.jsonl": _jsonl(self.train),
            "eval.jsonl": _jsonl(self.eval),
            "card.json": card.encode(),
            KNOWLEDGE_FILE: knowledge.to_jsonl(self.knowledge()),
        }

    def knowledge(self) -> list[knowledge.Entry]:
        """The knowledge base of this version: every kept row, train and eval, as an entry with a stable id."""
        return knowledge.entries_from_rows((p.instruction, p.output, p.similar) for p in (*self.train, *self.eval))


def _row(pair: QAPair) -> dict[str, Any]:
    row = asdict(pair)
    if not pair.similar:  # a row without similar questions is written in the three fields it always had
        del row["similar"]
    return row


def _jsonl(pairs: Iterable[QAPair]) -> bytes:
    return "".join(json.dumps(_row(p), ensure_ascii=False) + "\n" for p in pairs).encode("utf-8")


def dataset_id_for(train: bytes, eval_: bytes, options: IngestOptions) -> str:
    settings = json.dumps({"pipeline": PIPELINE_VERSION, "options": options.fingerprint()}, sort_keys=True)
    digest = hashlib.sha256()
    for part in (settings.encode(), train, eval_):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed, so no two splits of the bytes collide
        digest.update(part)
    return "ds-" + digest.hexdigest()[:16]


def count_tokens(tokenizer: SupportsEncode, text: str) -> int:
    try:
        encoded = tokenizer.encode(text, add_special_tokens=False)
    except TypeError:  # tiktoken-style encode(text) without the keyword
        encoded = tokenizer.encode(text)
    ids = getattr(encoded, "ids", encoded)  # tokenizers.Tokenizer returns an Encoding
    return len(ids)


def length_stats(values: list[int]) -> dict[str, float | int]:
    """min/max/mean/p50/p95 (nearest rank) and the total."""
    if not values:
        return {"min": 0, "max": 0, "mean": 0.0, "p50": 0, "p95": 0, "total": 0}
    ordered = sorted(values)

    def rank(q: float) -> int:
        return ordered[min(len(ordered), max(1, math.ceil(len(ordered) * q))) - 1]

    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": rank(0.5),
        "p95": rank(0.95),
        "total": sum(ordered),
    }


def _lengths(pairs: list[QAPair], tokenizer: SupportsEncode | None) -> dict[str, Any]:
    questions = [p.instruction + ("\n" + p.input if p.input else "") for p in pairs]
    answers = [p.output for p in pairs]
    stats: dict[str, Any] = {
        "chars": {
            "question": length_stats([len(q) for q in questions]),
            "answer": length_stats([len(a) for a in answers]),
        }
    }
    if tokenizer is not None:
        stats["tokens"] = {
            "question": length_stats([count_tokens(tokenizer, q) for q in questions]),
            "answer": length_stats([count_tokens(tokenizer, a) for a in answers]),
        }
    return stats


def prepare_dataset(
    records: Iterable[Mapping[str, Any]],
    options: IngestOptions | None = None,
    *,
    source: str = "records",
    tokenizer: SupportsEncode | None = None,
) -> PreparedDataset:
    """Map, clean, redact, filter, dedup and split ``records``; no I/O. Raises ``DatasetError`` on unusable input."""
    options = options or IngestOptions()
    shown = display_source(source)
    records = iter(records)
    first = next(records, None)
    if first is None:
        raise DatasetError(f"{shown}: no records (the source is empty)")
    mapping = resolve_mapping(
        [str(k) for k in first],
        options.question_field,
        options.answer_field,
        options.input_field,
        similar_field=options.similar_field,
        where=shown,
    )
    redactor = Redactor(options)

    read = truncated = similar_dropped = 0
    named_seen = False
    dropped: Counter[str] = Counter()
    rows: list[QAPair] = []
    row_pii: list[Counter[str]] = []
    wording_pii: list[Counter[str]] = []  # of the question and similar questions alone (what a duplicate passes on)
    for record in chain([first], records):
        read += 1
        raw = extract_pair(record, mapping)
        if raw is None:
            dropped["non_text"] += 1
            continue
        cleaned = clean_pair(raw)
        named_seen = named_seen or (mapping.similar is not None and similar_key(record, mapping.similar) is not None)
        redactions = [redactor.redact(t) for t in (cleaned.instruction, cleaned.input, cleaned.output)]
        if options.sensitive_action == "drop" and any(r.has_sensitive for r in redactions):
            dropped["sensitive_word"] += 1
            continue
        question, context, answer = (r.text for r in redactions)
        # A similar question with a sensitive word to drop goes alone; the row and its other wordings stay.
        alternatives = [redactor.redact(q) for q in cleaned.similar]
        kept_alternatives = [r for r in alternatives if not (options.sensitive_action == "drop" and r.has_sensitive)]
        similar, lost = keep_similar(question, tuple(r.text for r in kept_alternatives), options)
        similar_dropped += lost + len(alternatives) - len(kept_alternatives)
        row_redactions = redactions + kept_alternatives
        kept, reason = filter_pair(QAPair(question, context, answer, similar), options)
        if kept is None:
            dropped[reason or "filtered"] += 1
            continue
        if kept.output != redactions[2].text:
            truncated += 1
        rows.append(kept)
        row_pii.append(sum((r.counts for r in row_redactions), Counter()))
        wording_pii.append(sum((r.counts for r in (redactions[0], *kept_alternatives)), Counter()))

    if not rows:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items()))
        raise DatasetError(f"{shown}: no usable rows; all {read} records were dropped ({reasons})")

    result = dedup(
        rows,
        near=options.near_dedup,
        threshold=options.near_dup_threshold,
        ngram=options.ngram,
        num_perm=options.minhash_perm,
    )
    final, shared = drop_shared_similar(_merge_wordings(rows, result.into, options, result.kept))
    similar_dropped += shared
    if options.similar_field and not named_seen:
        raise DatasetError(f"{shown}: no record has the similar-questions field {options.similar_field!r}")
    pii: Counter[str] = sum((row_pii[i] for i in result.kept), Counter())
    pii += sum((wording_pii[i] for i in result.into), Counter())
    sides = split_keys([question_key(p) for p in final], options.eval_ratio, options.split_seed)
    train = tuple(p for p, side in zip(final, sides, strict=True) if side == "train")
    eval_ = tuple(p for p, side in zip(final, sides, strict=True) if side == "eval")
    dataset_id = dataset_id_for(_jsonl(train), _jsonl(eval_), options)

    card = {
        "dataset_id": dataset_id,
        "source": shown,
        "pipeline_version": PIPELINE_VERSION,
        "fields": {"question": mapping.question, "answer": mapping.answer, "input": mapping.input,
                   "similar": mapping.similar},
        "counts": {
            "read": read,
            "kept": len(final),
            "dropped": sum(dropped.values()),
            "duplicates": result.exact + result.near,
            "train": len(train),
            "eval": len(eval_),
        },
        "dropped": dict(sorted(dropped.items())),
        "truncated": truncated,
        "overlong": options.overlong,
        "pii_redacted": dict(sorted(pii.items())),
        "duplicates_removed": {"exact": result.exact, "near": result.near},
        "lengths": _lengths(final, tokenizer),
        "split": {
            "train": len(train),
            "eval": len(eval_),
            "eval_ratio": options.eval_ratio,
            "seed": options.split_seed,
        },
        "options": options.public_summary(),
        "knowledge": {"file": KNOWLEDGE_FILE, "entries": len({entry_id_for(p.instruction) for p in final}),
                      "similar_questions": sum(len(p.similar) for p in final),
                      "similar_dropped": similar_dropped, "index": retrieval.PARAMS},
    }  # fmt: skip
    return PreparedDataset(dataset_id, train, eval_, card)


def _merge_wordings(
    rows: list[QAPair], into: dict[int, int], options: IngestOptions, kept: tuple[int, ...]
) -> list[QAPair]:
    """The kept rows, each with the questions and similar questions of the duplicates dropped for it added to its
    own similar questions: a duplicate row is another way customers ask the same thing."""
    # a wording some kept row already asks stays that row's: merging it would make it shared, and shared is dropped
    taken = Counter(canonical_key(q) for i in kept for q in (rows[i].instruction, *rows[i].similar))
    extra: dict[int, list[str]] = {}
    for dropped, target in sorted(into.items()):
        mine = {canonical_key(q) for q in (rows[target].instruction, *rows[target].similar)}
        wordings = (rows[dropped].instruction, *rows[dropped].similar)
        free = [q for q in wordings if canonical_key(q) in mine or not taken[canonical_key(q)]]
        extra.setdefault(target, []).extend(free)
    out = []
    for i in kept:
        row = rows[i]
        if i in extra:
            similar, _ = keep_similar(row.instruction, (*row.similar, *extra[i]), options)
            row = QAPair(row.instruction, row.input, row.output, similar)
        out.append(row)
    return out


def write_dataset(prepared: PreparedDataset, out_dir: Path | str) -> str:
    """Write train.jsonl, eval.jsonl and card.json into ``out_dir`` atomically; returns the dataset id.

    Files go to a temp dir next to ``out_dir`` that is renamed into place, so ``out_dir`` is either untouched or
    complete. An existing ``out_dir`` is replaced only if it holds nothing but a previous dataset's files.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in DATASET_FILES)
        if foreign:
            raise DatasetError(f"{out_dir}: holds other files ({', '.join(foreign[:5])}); choose an empty --out")
    parent = out_dir.parent
    previous: Path | None = None
    tmp: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=parent))
        for name, data in prepared.files().items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        tmp.chmod(0o755)  # mkdtemp makes it 0700; other services read the dataset
        if out_dir.exists():
            previous = parent / f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(out_dir, previous)
        os.replace(tmp, out_dir)
    except OSError as exc:
        if previous is not None and not out_dir.exists():
            os.replace(previous, out_dir)
            previous = None
        raise DatasetError(f"{out_dir}: cannot write the dataset: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    return prepared.dataset_id
