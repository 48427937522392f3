"""PII redaction and the sensitive-word list. Ingest runs it on cleaned text before anything is written; the gateway
on logged questions before it replays them to a canary.

Each hit becomes a typed placeholder ([PHONE], [EMAIL], [ID_CARD], [BANK_CARD], [ADDRESS], [SENSITIVE]) so the
model learns that "a number goes here" rather than the number. Decisions, chosen to avoid redacting things that
are not personal data:

* phone: mainland MOBILE numbers only (1[3-9]x, 11 digits) with optional +86/0086/(+86) and space/dash
  separators. 400/800 service hotlines and landlines never start with 1[3-9], so they are kept.
* id_card: 18-character resident ID with a valid birth date AND a valid ISO 7064 checksum. An 18-digit number
  with a wrong checksum is not an ID (it is usually an order or waybill number) and is left alone by this rule.
* bank_card: 16-19 digits, optionally grouped by single spaces or dashes, starting 3-6 (UnionPay 62, Visa 4,
  Mastercard 5, Amex/JCB 3) AND passing the Luhn check. Non-Luhn numbers (order numbers) are kept.
* email: any address, except domains listed in ``keep_email_domains`` (the company's own support address).
* address (off by default, heuristic): a Chinese street address "…路/街/大道/巷/弄 N号 (N室)"; it may take a few
  characters before the street name with it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

DEFAULT_KINDS = ("phone", "email", "id_card", "bank_card")

PLACEHOLDERS = {
    "phone": "[PHONE]",
    "email": "[EMAIL]",
    "id_card": "[ID_CARD]",
    "bank_card": "[BANK_CARD]",
    "address": "[ADDRESS]",
    "sensitive_word": "[SENSITIVE]",
}

# ASCII-only boundaries: in Chinese text an address is glued to the characters around it ("邮箱a@b.com请回复").
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})(?![A-Za-z0-9-])"
)
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[0-9Xx](?![0-9A-Za-z])")
_DIGIT_RUN = re.compile(r"(?<![\d-])\d(?:[ -]?\d)+(?![\d])")
_PHONE = re.compile(r"(?<![\d+])(?:(?:\+|00)86[ -]?|\(\+?86\)[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)")
_ADDRESS = re.compile(
    r"[\u4e00-\u9fff0-9]{2,12}(?:路|街|大街|大道|巷|弄|胡同)\d+号(?:院|楼)?"
    r"(?:\d+(?:号楼|栋|幢|单元|层|楼|室))*"
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def valid_id_card(number: str) -> bool:
    """18-char resident ID: plausible birth date (1900-2099) and correct check character."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    if not (1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= _DAYS[month - 1]):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(text: str) -> str:
    return re.sub(r"[ -]", "", text)


def looks_like_bank_card(digits: str) -> bool:
    return 16 <= len(digits) <= 19 and digits[0] in "3456" and luhn_valid(digits)


def _sub(
    pattern: re.Pattern[str],
    kind: str,
    text: str,
    counts: Counter[str],
    accept: Callable[[re.Match[str]], bool] | None = None,
) -> str:
    def repl(match: re.Match[str]) -> str:
        if accept is not None and not accept(match):
            return match.group(0)
        counts[kind] += 1
        return PLACEHOLDERS[kind]

    return pattern.sub(repl, text)


class RedactionOptions(Protocol):
    """What a redactor is configured with (ingest's ``IngestOptions`` has these fields)."""

    @property
    def redact_pii(self) -> bool: ...
    @property
    def pii_kinds(self) -> tuple[str, ...]: ...
    @property
    def keep_email_domains(self) -> tuple[str, ...]: ...
    @property
    def sensitive_words(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class DefaultRedaction:
    """The default rules (every kind but the heuristic address rule, no sensitive words)."""

    redact_pii: bool = True
    pii_kinds: tuple[str, ...] = DEFAULT_KINDS
    keep_email_domains: tuple[str, ...] = ()
    sensitive_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Redaction:
    text: str
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def has_sensitive(self) -> bool:
        return self.counts["sensitive_word"] > 0


class Redactor:
    """Compiled redaction rules for one set of options; ``redact`` is pure."""

    def __init__(self, options: RedactionOptions) -> None:
        self._kinds = set(options.pii_kinds) if options.redact_pii else set()
        self._keep_domains = set(options.keep_email_domains)
        words = sorted(options.sensitive_words, key=len, reverse=True)
        # Longest first so "CloudMax内部" wins over "CloudMax"; case-insensitive for Latin words.
        self._sensitive = re.compile("|".join(map(re.escape, words)), re.I) if words else None

    def _personal_email(self, match: re.Match[str]) -> bool:
        domain = match.group(1).lower()
        return not any(domain == d or domain.endswith("." + d) for d in self._keep_domains)

    def redact(self, text: str) -> Redaction:
        counts: Counter[str] = Counter()
        if not text:
            return Redaction(text, counts)

        # Emails first: a local part may look like a phone number (13800138000@example.com).
        if "email" in self._kinds:
            text = _sub(_EMAIL, "email", text, counts, self._personal_email)
        if "id_card" in self._kinds:
            text = _sub(_ID_CARD, "id_card", text, counts, lambda m: valid_id_card(m.group(0)))
        if "bank_card" in self._kinds:
            text = _sub(_DIGIT_RUN, "bank_card", text, counts, lambda m: looks_like_bank_card(_digits(m.group(0))))
        if "phone" in self._kinds:
            text = _sub(_PHONE, "phone", text, counts)
        if "address" in self._kinds:
            text = _sub(_ADDRESS, "address", text, counts)
        if self._sensitive is not None:
            text = _sub(self._sensitive, "sensitive_word", text, counts)
        return Redaction(text, counts)
