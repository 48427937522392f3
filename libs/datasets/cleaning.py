"""Text normalization that keeps meaning, and the row filters with the reason each row is dropped.

Normalization is a documented SUBSET of NFKC, because full NFKC rewrites Chinese full-width punctuation
(，。？！：；（）) into ASCII and circled/superscript numbering (①, m²) into plain digits:

* NFC (canonical composition only; nothing compatibility-folded);
* full-width ASCII letters, digits and symbols (Ａ-Ｚ, ０-９, ＠, ％, ／, …) fold to ASCII, EXCEPT the full-width
  punctuation Chinese text uses as its own: ！，：；？（）;
* odd spaces (NBSP, ideographic space U+3000, thin/em spaces) become a plain space; line/paragraph separators a
  newline; control characters (except newline and tab) and invisible format characters (zero-width space, BOM,
  soft hyphen, bidi marks) are removed;
* HTML tags (a known list of tag names, so "价格 < 100 且 > 50" survives) are stripped, block tags become line
  breaks, ``<a href=URL>text</a>`` keeps the URL as "text (URL)", and entities are decoded only in their
  ``&name;`` form (so a URL query like ``?id=1&reg=2`` is not mangled);
* runs of spaces/tabs collapse to one space, blank lines disappear, each line is trimmed; single line breaks stay
  (numbered steps read better on their own lines).

Everything else — punctuation, numbering, 「」quotes, units, URLs, emoji — is kept as written.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter

from libs.common.pii import DefaultRedaction, Redactor
from libs.datasets.options import IngestOptions
from libs.datasets.records import QAPair

_KEEP_FULLWIDTH = set("！，：；？（）")
_FOLD: dict[int, int | str] = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F) if chr(cp) not in _KEEP_FULLWIDTH}
_SPACES = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000\t"
_FOLD.update({ord(c): " " for c in _SPACES})
_FOLD.update({0x2028: "\n", 0x2029: "\n"})

_TAGS = (
    "a|abbr|address|article|aside|b|big|blockquote|body|br|caption|center|cite|code|col|colgroup|dd|del|details|"
    "dfn|div|dl|dt|em|figcaption|figure|font|footer|h[1-6]|head|header|hr|html|i|img|ins|kbd|label|li|main|mark|"
    "nav|ol|p|pre|q|s|samp|section|small|span|strike|strong|sub|summary|sup|table|tbody|td|tfoot|th|thead|title|"
    "tr|tt|u|ul|var"
)
_BLOCK = re.compile(
    r"<(?:br|hr|/?(?:p|div|li|ul|ol|tr|table|h[1-6]|blockquote|pre|section|article|dd|dt|dl))\b[^<>]*>", re.I
)
_TAG = re.compile(rf"</?(?:{_TAGS})\b[^<>]*>", re.I)
_DROP_BLOCKS = re.compile(r"<(script|style)\b[^<>]*>.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_LINK = re.compile(r"""<a\b[^<>]*?\bhref\s*=\s*["']?([^"'\s<>]+)["']?[^<>]*>(.*?)</a\s*>""", re.I | re.S)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_HSPACE = re.compile(r"[ \t]+")

# A sentence ends at 。！？!? (with any closing quotes/brackets after it), at "." before a space or the end (so
# "1." in "1.5GB" or a URL does not count), or at a line break.
_SENTENCE_END = re.compile(r"(?:[。！？!?…]+|\.(?=\s|$))[」』”’）)\]】》\"']*|\n")


def _link_text(match: re.Match[str]) -> str:
    url, label = match.group(1), _TAG.sub("", match.group(2)).strip()
    return url if not label or label == url else f"{label} ({url})"


def strip_html(text: str) -> str:
    """Remove HTML markup but keep its text, its line structure and the targets of links."""
    if "<" in text:
        text = _DROP_BLOCKS.sub("", text)
        text = _LINK.sub(_link_text, text)
        text = _BLOCK.sub("\n", text)
        text = _TAG.sub("", text)
    return text


def decode_entities(text: str) -> str:
    """Decode ``&amp;``, ``&#12290;`` etc.; bare ``&name`` without the semicolon is left alone."""
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text) if "&" in text else text


def normalize_text(text: str) -> str:
    """Normalize one field as described in the module docstring. Idempotent."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Entities first: CMS exports often store escaped markup ("&lt;p&gt;"), which must then be stripped as tags.
    text = strip_html(decode_entities(text))
    text = unicodedata.normalize("NFC", text).translate(_FOLD)
    text = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf"))
    lines = (_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def canonical_key(text: str) -> str:
    """A comparison key: case-folded, without whitespace or punctuation. For dedup and split, never written."""
    return "".join(ch for ch in text.casefold() if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def letter_ratio(text: str) -> float:
    chars = [ch for ch in text if not ch.isspace()]
    if not chars:
        return 0.0
    return sum(1 for ch in chars if unicodedata.category(ch)[0] in "LN") / len(chars)


def is_non_text(text: str, min_ratio: float) -> bool:
    """Mojibake (U+FFFD) or mostly symbols — e.g. a base64 blob's padding, a row of dashes, an emoji string."""
    return "\ufffd" in text or letter_ratio(text) < min_ratio


def truncate_at_sentence(text: str, limit: int) -> str | None:
    """The longest prefix of ``text`` within ``limit`` chars that ends at a sentence end, or None if there is none."""
    cut = None
    for match in _SENTENCE_END.finditer(text):
        if match.end() > limit:
            break
        cut = match.end()
    return text[:cut].rstrip() if cut else None


def clean_pair(pair: QAPair) -> QAPair:
    # Split after normalizing: a cell's <br> becomes a line break, and each line is one wording.
    similar = tuple(line for q in pair.similar for line in normalize_text(q).split("\n"))
    return QAPair(normalize_text(pair.instruction), normalize_text(pair.input), normalize_text(pair.output), similar)


def keep_similar(question: str, similar: tuple[str, ...], options: IngestOptions) -> tuple[tuple[str, ...], int]:
    """The CLEANED similar questions worth keeping, and how many were dropped: empty ones, ones outside the
    question length limits or mostly symbols, repeats, and ones that are the question itself."""
    seen = {canonical_key(question)}
    kept = []
    for q in similar:
        key = canonical_key(q)
        if key in seen or not options.min_question_chars <= len(q) <= options.max_question_chars:
            continue
        if is_non_text(q, options.min_letter_ratio):
            continue
        seen.add(key)
        kept.append(q)
    return tuple(kept), len(similar) - len(kept)


def drop_shared_similar(rows: list[QAPair]) -> tuple[list[QAPair], int]:
    """Rows without the similar questions that are not theirs alone: one that is another row's question, or
    that two rows list (a wording must lead to one answer, in retrieval and in training). Returns the rows and how
    many similar questions went."""
    questions = {canonical_key(r.instruction) for r in rows}
    listed = Counter(canonical_key(q) for r in rows for q in r.similar)
    out, dropped = [], 0
    for r in rows:
        mine = tuple(q for q in r.similar if canonical_key(q) not in questions and listed[canonical_key(q)] == 1)
        dropped += len(r.similar) - len(mine)
        out.append(QAPair(r.instruction, r.input, r.output, mine) if len(mine) != len(r.similar) else r)
    return out, dropped


def filter_pair(pair: QAPair, options: IngestOptions) -> tuple[QAPair | None, str | None]:
    """Apply the filters to a CLEANED pair: ``(pair, None)`` to keep it (maybe truncated) or ``(None, reason)``.

    Reasons: empty_question, empty_answer, non_text, question_equals_answer, question_too_short,
    question_too_long, answer_too_short, answer_too_long.
    """
    question, answer = pair.instruction, pair.output
    if not question:
        return None, "empty_question"
    if not answer:
        return None, "empty_answer"
    if any(is_non_text(t, options.min_letter_ratio) for t in (question, answer)):
        return None, "non_text"
    if canonical_key(question) == canonical_key(answer):
        return None, "question_equals_answer"
    if len(question) < options.min_question_chars:
        return None, "question_too_short"
    if len(question) > options.max_question_chars:
        return None, "question_too_long"
    if len(answer) < options.min_answer_chars:
        return None, "answer_too_short"
    if len(answer) > options.max_answer_chars:
        cut = truncate_at_sentence(answer, options.max_answer_chars) if options.overlong == "truncate" else None
        if cut is None or len(cut) < options.min_answer_chars:
            return None, "answer_too_long"
        return QAPair(question, pair.input, cut, pair.similar), None
    return pair, None


_CUSTOMER_REDACTOR = Redactor(DefaultRedaction())


def redact_customer_text(text: str) -> str:
    """A customer's words as they may leave the answer log (live knowledge, shadow replays, serving profiles):
    normalized as ingest normalizes (full-width digits and ＠ folded, so a phone number typed on a Chinese keyboard
    is seen), then PII-redacted by the default rules. A dataset release redacts again by its own rules."""
    return _CUSTOMER_REDACTOR.redact(normalize_text(text)).text
