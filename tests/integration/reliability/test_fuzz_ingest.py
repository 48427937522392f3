"""Ingest cleaning, PII redaction and dedup on arbitrary input: never crash, never leak planted personal data."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.common.pii import Redactor
from libs.datasets.cleaning import clean_pair, filter_pair, normalize_text
from libs.datasets.dedup import dedup
from libs.datasets.options import IngestOptions
from libs.datasets.pipeline import prepare_dataset
from libs.datasets.records import QAPair
from services.ingest.errors import IngestError

#: Valid by each rule's own checks: a mainland mobile, a checksummed 18-digit ID, a Luhn-valid card, a personal email.
PLANTED = ["13812345678", "11010519491231002X", "4111111111111111", "zhang.san@example.org"]
# Any text, CJK and control characters included. Punctuation delimiters keep a plant from fusing into a longer
# digit run: card numbers may be written in space-separated groups, so "0 4111111111111111" is one 17-digit
# (Luhn-invalid) number to the redactor, not the planted card — see the bench report's note on that edge.
noise = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
DELIMS = st.sampled_from(["，", "。", "：", "（", "）", "；"])
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(noise, noise, noise)
def test_cleaning_never_crashes(q: str, ctx: str, a: str) -> None:
    pair = clean_pair(QAPair(q, ctx, a))
    kept, reason = filter_pair(pair, IngestOptions())
    assert (kept is None) != (reason is None)
    assert normalize_text(pair.instruction) == pair.instruction  # cleaning is idempotent


@FUZZ
@given(noise, noise, st.sampled_from(PLANTED), DELIMS, DELIMS)
def test_redaction_never_leaks_a_planted_value(before: str, after: str, secret: str, d1: str, d2: str) -> None:
    text = f"{before}{d1}{secret}{d2}{after}"
    out = Redactor(IngestOptions()).redact(text).text
    assert secret not in out
    assert secret.lower() not in out.lower()


@FUZZ
@given(st.lists(st.tuples(noise, noise), max_size=25))
def test_dedup_never_crashes_and_keeps_a_subset(rows: list[tuple[str, str]]) -> None:
    pairs = [QAPair(q, "", a) for q, a in rows]
    result = dedup(pairs)
    assert list(result.kept) == sorted(set(result.kept))
    assert all(0 <= i < len(pairs) for i in result.kept)
    assert len(result.kept) + result.exact + result.near == len(pairs)


@FUZZ
@given(
    st.lists(st.tuples(noise, noise, st.sampled_from(PLANTED), DELIMS), min_size=1, max_size=12),
)
def test_pipeline_output_never_contains_planted_pii(rows: list[tuple[str, str, str, str]]) -> None:
    base = "请问如何修改绑定的手机号码和联系方式呢"
    records = [
        {"question": f"{i}{base}{d}{secret}{d}{q}", "answer": f"您好，已为您登记{d}{secret}{d}请注意查收。{a}"}
        for i, (q, a, secret, d) in enumerate(rows)
    ]
    try:
        prepared = prepare_dataset(records, IngestOptions(), source="fuzz.jsonl")
    except IngestError:
        return  # unusable input is a clean, explained refusal
    written = b"".join(prepared.files().values()).decode("utf-8")
    for _q, _a, secret, _d in rows:
        assert secret not in written
        assert json.dumps(secret)[1:-1] not in written
