"""Every knob of the ingest pipeline in one validated model.

All fields here can change the written dataset, so all of them feed the dataset id: the same input with different
options is a different dataset version.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.common.pii import DEFAULT_KINDS

PII_KINDS = ("phone", "email", "id_card", "bank_card", "address")


class IngestOptions(BaseModel):
    """Thresholds and switches for cleaning, PII redaction, dedup and split. Defaults suit a Chinese FAQ."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Field mapping. None = auto-detect question/answer or instruction/input/output (case-insensitive).
    question_field: str | None = Field(default=None, description="Column holding the question (-> instruction).")
    answer_field: str | None = Field(default=None, description="Column holding the answer (-> output).")
    input_field: str | None = Field(default=None, description="Optional context column (-> input).")
    similar_field: str | None = Field(
        default=None, description="Column of similar questions (a list, or one per line / '|'-separated)."
    )

    # Length filters, in characters after cleaning.
    min_question_chars: int = Field(default=2, ge=1)
    max_question_chars: int = Field(default=256, ge=1)
    min_answer_chars: int = Field(default=2, ge=1)
    max_answer_chars: int = Field(default=1024, ge=1)
    overlong: Literal["drop", "truncate"] = Field(
        default="drop",
        description=(
            "Over-long answers: 'drop' the row, or 'truncate' at the last sentence end within the limit (rows "
            "with no usable sentence end are still dropped). Over-long questions are always dropped: cutting a "
            "question changes what is asked."
        ),
    )
    min_letter_ratio: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Share of letters/digits among non-space characters below which a field counts as non-text.",
    )

    # PII and sensitive words.
    redact_pii: bool = True
    pii_kinds: tuple[str, ...] = Field(
        default=DEFAULT_KINDS,
        description="Kinds to redact; add 'address' for the (heuristic) street-address rule.",
    )
    keep_email_domains: tuple[str, ...] = Field(
        default=(),
        description="Email domains that are company contacts, not personal data (e.g. 'cloudmax.com').",
    )
    sensitive_words: tuple[str, ...] = Field(default=(), description="Words to mask or whose rows to drop.")
    sensitive_action: Literal["mask", "drop"] = "mask"

    # Dedup.
    near_dedup: bool = True
    near_dup_threshold: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Jaccard similarity of question character n-grams at or above which two rows are near-duplicates.",
    )
    ngram: int = Field(default=3, ge=1, le=8, description="Character n-gram size for near-duplicate detection.")
    minhash_perm: int = Field(default=128, ge=16, le=1024, description="MinHash permutations (LSH candidates).")

    # Split.
    eval_ratio: float = Field(default=0.1, ge=0, lt=1, description="Share of questions that go to eval.jsonl.")
    split_seed: str = Field(default="kefu", description="Salt of the split hash; change it to draw another split.")

    @field_validator("pii_kinds")
    @classmethod
    def _known_kinds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - set(PII_KINDS))
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; known: {list(PII_KINDS)}")
        # Order does not change the output, so sort it to keep the dataset id independent of it.
        return tuple(sorted(set(v)))

    @field_validator("keep_email_domains")
    @classmethod
    def _lower_domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({d.strip().lower().lstrip("@") for d in v if d.strip()}))

    @field_validator("sensitive_words")
    @classmethod
    def _clean_words(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({w.strip() for w in v if w.strip()}))

    @model_validator(mode="after")
    def _ranges(self) -> IngestOptions:
        if self.min_question_chars > self.max_question_chars:
            raise ValueError("min_question_chars is greater than max_question_chars")
        if self.min_answer_chars > self.max_answer_chars:
            raise ValueError("min_answer_chars is greater than max_answer_chars")
        return self

    def fingerprint(self) -> dict[str, Any]:
        """Everything that shapes the output, as plain JSON values (hashed into the dataset id)."""
        return self.model_dump(mode="json")

    def public_summary(self) -> dict[str, Any]:
        """The options as shown in card.json: the sensitive words themselves are not repeated there."""
        summary = self.fingerprint()
        summary["sensitive_words"] = len(self.sensitive_words)
        return summary
