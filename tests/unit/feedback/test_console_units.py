"""The agent console's pure parts: the message catalogue, date bounds, and the answers-log templates."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest
from starlette.requests import Request

from libs.common.asked_kinds import ALL_KINDS
from services.feedback import i18n
from services.feedback.answers import OUTCOMES, AnswerPage, AnswerRow, FlagBrief, OutcomeFilter, parse_bound
from services.feedback.errors import Invalid
from services.feedback.flags import STATUSES, StatusFilter
from services.feedback.web import HERE, templates

TEMPLATES = sorted((HERE / "templates").glob("*.html"))


def test_every_locale_has_the_same_keys_and_placeholders() -> None:
    for locale, messages in i18n.CATALOGUE.items():
        assert set(messages) == set(i18n.ZH), locale
        for key, text in messages.items():
            assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", i18n.ZH[key])), (locale, key)


def test_templates_only_use_keys_the_catalogue_has() -> None:
    used: set[str] = set()
    for path in TEMPLATES:
        used |= set(re.findall(r"""\bt\(["'](\w+)["']\s*[,)]""", path.read_text(encoding="utf-8")))
    prefixed = {"status_": (*STATUSES, "all", "unanswered"), "no_flags_": (*STATUSES, "all")}
    prefixed |= {"outcome_": ("answered", "handed_off", "flagged"), "lang_": i18n.LOCALES, "kind_": ALL_KINDS}
    used |= {prefix + v for prefix, values in prefixed.items() for v in values}
    assert used <= set(i18n.ZH), used - set(i18n.ZH)


def test_templates_hold_no_hard_coded_prose() -> None:
    """Text between tags is a variable, a symbol or a code, never a sentence in one language."""
    for path in TEMPLATES:
        body = re.sub(r"{[{%#].*?[}%#]}", "", path.read_text(encoding="utf-8"), flags=re.S)
        body = re.sub(r"<[^>]*>", "\n", body)
        words = [w for w in re.findall(r"[A-Za-z]{3,}|[\u4e00-\u9fff]+", body) if w not in {"UTC"}]
        assert words == [], (path.name, words)


def _request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": query.encode()})


@pytest.mark.parametrize(("query", "locale"), [("", "zh"), ("lang=en", "en"), ("lang=fr", "zh"), ("lang=zh", "zh")])
def test_locale_defaults_to_chinese(query: str, locale: str) -> None:
    assert i18n.locale_of(_request(query)) == locale


def test_translator_formats_and_falls_back() -> None:
    assert i18n.translator("en")("answers_summary", total=3, page=1, pages=1) == "Answers: 3 · page 1/1"
    assert i18n.translator("zh")("tab_answers") == "回答记录"
    assert i18n.translator("xx")("tab_answers") == "回答记录"
    assert i18n.translator("en")("no_such_key") == "no_such_key"


def test_date_bounds() -> None:
    assert parse_bound("since", "2026-11-30", end=False) == datetime(2026, 11, 30, tzinfo=UTC)
    assert parse_bound("until", "2026-11-30", end=True) == datetime(2026, 12, 1, tzinfo=UTC)  # the whole day
    assert parse_bound("until", "2026-11-30T08:15:00", end=True) == datetime(2026, 11, 30, 8, 15, tzinfo=UTC)
    assert parse_bound("since", " ", end=False) is None
    assert parse_bound("since", "2026-11-30T08:00+08:00", end=False) == datetime(2026, 11, 30, tzinfo=UTC)
    for bad in ("yesterday", "9999-12-31", "0001-01-01T00:00+05:00", "2026-13-01"):
        with pytest.raises(Invalid) as caught:  # a 400 (routes.STATUS_OF)
            parse_bound("until", bad, end=True)
        assert caught.value.message.startswith("until:"), bad


def _row(**changes: object) -> AnswerRow:
    values: dict = {
        "answer_id": "ans-1",
        "question": "<img src=x onerror=alert(1)>",
        "answer": "请联系销售 & 客服",
        "engine_id": "eng-1",
        "dataset_id": "ds-1",
        "conversation_id": None,
        "status": "ok",
        "handoff": False,
        "verbatim": False,
        "entry_ids": ["kb-a", "kb-b"],
        "retrieval_scores": [3.5, 1.25],
        "confidence": 0.8,
        "latency_ms": 120.4,
        "created_at": datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
        "outcome": "answered",
        "flag": None,
    }
    return AnswerRow(**{**values, **changes})


def _render_row(locale: str, row: AnswerRow) -> str:
    return templates.get_template("_answer.html").render(row=row, t=i18n.translator(locale))


def test_answer_row_shows_the_log_and_prefills_the_correction() -> None:
    html = _render_row("zh", _row())
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    for shown in ("kb-a", "3.50", "kb-b", "1.25", "0.80", "120 ms", "eng-1", "已回答", "标记并改进回答"):
        assert shown in html, shown
    assert 'name="reason"' in html and ">请联系销售 &amp; 客服</textarea>" in html  # the model's answer to edit
    assert "查看整段对话" not in html  # a single-turn answer has no conversation to open
    in_chat = _render_row("zh", _row(conversation_id="conv-7"))
    assert 'data-conversation="conv-7"' in in_chat and "查看整段对话" in in_chat
    english = _render_row("en", _row())
    assert "answered" in english and "Flag and correct this answer" in english and "已回答" not in english
    assert 'data-field="verbatim"' not in html  # generated by the engine
    served_as_is = _render_row("zh", _row(verbatim=True))
    assert 'data-field="verbatim"' in served_as_is and "审核原文" in served_as_is and "已回答" in served_as_is
    assert "approved text" in _render_row("en", _row(verbatim=True))


def test_handed_off_row_offers_a_new_entry_and_flagged_row_offers_nothing() -> None:
    html = _render_row("zh", _row(handoff=True, outcome="handed_off", entry_ids=[], retrieval_scores=[]))
    assert "作为新 FAQ 条目回答" in html and 'name="reason"' not in html and "></textarea>" in html
    flagged = _row(outcome="flagged", flag=FlagBrief("fl-1", "approved", "fix", "fix!"))
    html = _render_row("en", flagged)
    assert "<form" not in html and 'data-status="approved"' in html and "fix!" in html and "approved · live" in html
    rejected = _row(outcome="flagged", flag=FlagBrief("fl-1", "rejected", "fix", None))
    assert "<form" in _render_row("en", rejected)  # a rejected flag may be followed by a better one


def test_answers_page_counts_pages() -> None:
    page = AnswerPage(rows=[_row()], page=2, per_page=20, total=41)
    assert page.pages == 3 and page.to_json()["answers"][0]["created_at"] == "2026-11-30T09:00:00+00:00"
    html = templates.get_template("_answers.html").render(result=page, t=i18n.translator("en"))
    assert "Answers: 41 · page 2/3" in html and 'data-page="1"' in html and 'data-page="3"' in html
    assert AnswerPage(rows=[], page=1, per_page=20, total=0).pages == 1


def test_stylesheet_names_cjk_fonts() -> None:
    css = (Path(HERE) / "static" / "review.css").read_text(encoding="utf-8")
    assert "Noto Sans CJK SC" in css and "PingFang SC" in css and "Microsoft YaHei" in css


def test_filters_match_the_domain() -> None:
    assert set(get_args(StatusFilter)) == {*STATUSES, "all"}
    assert set(get_args(OutcomeFilter)) == {*OUTCOMES, ""}
