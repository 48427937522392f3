"""``kefu ingest``: read a source, prepare the dataset, write it atomically and (unless --offline) publish it.

The last line on stdout is always the dataset id, so scripts can do ``ID=$(kefu ingest faq.csv | tail -1)``.
Bad input prints ``error: <message>`` to stderr and exits 2, without a traceback and without touching --out.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from libs.datasets.options import IngestOptions
from libs.datasets.pipeline import PreparedDataset, SupportsEncode, prepare_dataset, write_dataset
from libs.datasets.records import display_source
from services.ingest.errors import IngestError
from services.ingest.sources import decode_bytes, read_records

DEFAULT_OUT_ROOT = Path("out") / "datasets"


class SourceFormat(StrEnum):
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    sqlite = "sqlite"
    postgres = "postgres"


class Overlong(StrEnum):
    drop = "drop"
    truncate = "truncate"


def _read_small_text(path: Path, what: str) -> str:
    try:
        return decode_bytes(path.read_bytes(), str(path))
    except OSError as exc:
        raise IngestError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def build_options(options_file: Path | None, overrides: dict[str, Any], sensitive_words: Path | None) -> IngestOptions:
    """Options from an optional YAML/JSON file, then the flags that were given, validated together."""
    values: dict[str, Any] = {}
    if options_file is not None:
        try:
            loaded = yaml.safe_load(_read_small_text(options_file, "options file")) or {}
        except yaml.YAMLError as exc:
            raise IngestError(f"{options_file}: not valid YAML/JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise IngestError(f"{options_file}: expected a mapping of option names to values")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None and v != []})
    if sensitive_words is not None:
        lines = _read_small_text(sensitive_words, "sensitive-word list").splitlines()
        words = [w.strip() for w in lines if w.strip() and not w.lstrip().startswith("#")]
        values["sensitive_words"] = [*values.get("sensitive_words", []), *words]
    try:
        return IngestOptions(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise IngestError(f"invalid options: {problems}") from None


def load_tokenizer(path: Path) -> SupportsEncode:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise IngestError(f"{path}: cannot load a tokenizer: {exc}") from None


def summary_lines(prepared: PreparedDataset, out_dir: Path) -> list[str]:
    card = prepared.card
    counts = card["counts"]

    def listing(items: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in items.items()) or "none"

    return [
        f"read {counts['read']}, kept {counts['kept']} (train {counts['train']}, eval {counts['eval']})",
        f"dropped {counts['dropped']}: {listing(card['dropped'])}; truncated {card['truncated']}",
        f"duplicates removed: {listing(card['duplicates_removed'])}",
        f"PII redacted: {listing(card['pii_redacted'])}",
        f"wrote {out_dir}",
    ]


def publish(out_dir: Path, dataset_id: str, card: dict[str, Any], source: str) -> None:
    # Imported here: offline runs must not need the broker/DB stack that publishing pulls in.
    from services.ingest.publish import publish_dataset

    publish_dataset(out_dir, dataset_id, card, source)


def ingest(
    source: Annotated[str, typer.Argument(help="A .json/.jsonl/.csv file, a SQLite file or a postgresql:// URL.")],
    query: Annotated[str | None, typer.Option("--query", help="SELECT for sqlite/postgres sources.")] = None,
    fmt: Annotated[SourceFormat | None, typer.Option("--format", help="Override the detected format.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help=f"Output directory (default: {DEFAULT_OUT_ROOT}/<dataset id>).")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Only write files; do not store or publish.")] = False,
    options_file: Annotated[Path | None, typer.Option("--options", help="YAML/JSON file of IngestOptions.")] = None,
    question_field: Annotated[str | None, typer.Option(help="Field holding the question.")] = None,
    answer_field: Annotated[str | None, typer.Option(help="Field holding the answer.")] = None,
    input_field: Annotated[str | None, typer.Option(help="Field holding optional context.")] = None,
    similar_field: Annotated[
        str | None, typer.Option(help="Field holding similar questions (default: 'similar', '相似问', ...).")
    ] = None,
    eval_ratio: Annotated[float | None, typer.Option(help="Share of questions for eval (default 0.1).")] = None,
    near_dup_threshold: Annotated[
        float | None, typer.Option(help="Question n-gram Jaccard for near-duplicates (default 0.7).")
    ] = None,
    max_answer_chars: Annotated[
        int | None, typer.Option(help="Longest answer kept, in characters (default 1024).")
    ] = None,
    overlong: Annotated[
        Overlong | None, typer.Option(help="Over-long answers: drop the row or truncate at a sentence end.")
    ] = None,
    sensitive_words: Annotated[
        Path | None, typer.Option(help="File of sensitive words, one per line, masked as [SENSITIVE].")
    ] = None,
    keep_email_domain: Annotated[
        list[str] | None, typer.Option(help="Company email domain to keep unredacted (repeatable).")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="Tokenizer dir (save_pretrained) for token stats in card.json.")
    ] = None,
) -> None:
    """Turn FAQ Q-A data into train.jsonl / eval.jsonl / card.json; the last stdout line is the dataset id."""
    try:
        overrides = {
            "question_field": question_field,
            "answer_field": answer_field,
            "input_field": input_field,
            "similar_field": similar_field,
            "eval_ratio": eval_ratio,
            "near_dup_threshold": near_dup_threshold,
            "max_answer_chars": max_answer_chars,
            "overlong": overlong.value if overlong else None,
            "keep_email_domains": keep_email_domain,
        }
        options = build_options(options_file, overrides, sensitive_words)
        records = read_records(source, fmt.value if fmt else None, query)
        tok = load_tokenizer(tokenizer) if tokenizer is not None else None
        prepared = prepare_dataset(records, options, source=source, tokenizer=tok)
        out_dir = out if out is not None else DEFAULT_OUT_ROOT / prepared.dataset_id
        dataset_id = write_dataset(prepared, out_dir)
        for line in summary_lines(prepared, out_dir):
            typer.echo(line)
        if not offline:
            publish(out_dir, dataset_id, prepared.card, display_source(source))
    except IngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(dataset_id)


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to the main ``kefu`` app."""
    app.command("ingest")(ingest)
