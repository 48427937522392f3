"""Normalization keeps meaning; filters drop rows with the right reason."""

from __future__ import annotations

import pytest

from libs.datasets.cleaning import (
    canonical_key,
    filter_pair,
    is_non_text,
    normalize_text,
    redact_customer_text,
    truncate_at_sentence,
)
from libs.datasets.options import IngestOptions
from libs.datasets.records import QAPair


@pytest.mark.parametrize(
    "text",
    [
        "步骤：1. 访问登录页。2. 点击「忘记密码」",
        "步骤:1. 访问登录页。2. 点击「忘记密码」",
        "标准存储每GB每月0.12元，可用性99.95%（详见SLA）！",
        "访问 https://www.cloudmax.com/help?id=1&reg=2#faq 查看《服务协议》",
        "“双引号”‘单引号’『书名』、顿号……破折号——",
        "① 登录 ② 点击 m² 3×4 7×24小时",
    ],
)
def test_meaning_survives_cleaning(text: str) -> None:
    assert normalize_text(text) == text


def test_full_width_ascii_folds_but_chinese_punctuation_stays() -> None:
    assert normalize_text("ＣｌｏｕｄＭａｘ ＥＣＳ １２３＠ｑｑ．ｃｏｍ ５０％") == "CloudMax ECS 123@qq.com 50%"
    assert normalize_text("你好，请问？好的！注意：是；（括号）") == "你好，请问？好的！注意：是；（括号）"


def test_odd_spaces_and_invisible_characters() -> None:
    assert normalize_text("拨打\u3000400-820-8820\u00a0咨询") == "拨打 400-820-8820 咨询"
    assert normalize_text("\ufeff客\u200b服\u00ad热线") == "客服热线"
    assert normalize_text("a\x07b\x00c\x1bd") == "abcd"


def test_whitespace_collapses_but_single_line_breaks_stay() -> None:
    assert normalize_text("  第一步   打开\t页面 \r\n\r\n\n  第二步  点击\u2028第三步 ") == (
        "第一步 打开 页面\n第二步 点击\n第三步"
    )


def test_html_tags_are_stripped_and_blocks_become_lines() -> None:
    html = "<div><p>您好&nbsp;<b>注意</b>：</p><ol><li>打开登录页</li><li>点击「忘记密码」</li></ol></div>"
    assert normalize_text(html) == "您好 注意：\n打开登录页\n点击「忘记密码」"


def test_links_keep_their_url() -> None:
    assert normalize_text('见<a href="https://docs.cloudmax.com/a?x=1&amp;y=2">文档</a>。') == (
        "见文档 (https://docs.cloudmax.com/a?x=1&y=2)。"
    )
    assert normalize_text('<a href="https://cloudmax.com">https://cloudmax.com</a>') == "https://cloudmax.com"


def test_script_style_and_comments_are_removed_with_their_content() -> None:
    assert normalize_text("<script>alert(1)</script><style>p{color:red}</style>好<!-- 内部 -->的") == "好的"


def test_comparison_signs_are_not_mistaken_for_tags() -> None:
    assert normalize_text("价格 < 100 且 > 50，a<b 时") == "价格 < 100 且 > 50，a<b 时"


def test_entities_decode_only_in_full_form() -> None:
    assert normalize_text("0.12&#20803;/GB &lt; 1&yen; &amp;") == "0.12元/GB < 1¥ &"
    assert normalize_text("AT&T ?a=1&copy=2") == "AT&T ?a=1&copy=2"


def test_escaped_markup_is_decoded_then_stripped() -> None:
    assert normalize_text("&lt;b&gt;重要&lt;/b&gt;提示") == "重要提示"


@pytest.mark.parametrize(
    "text",
    ["<p>Ｈｅｌｌｏ&nbsp;世界</p>\r\n\r\n第二行\u3000", "步骤：1. 访问登录页。2. 点击「忘记密码」", "a\u200b\x07b"],
)
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_canonical_key_ignores_case_space_and_punctuation() -> None:
    assert canonical_key("如何 重置 密码？") == canonical_key("如何重置密码!") == "如何重置密码"
    assert canonical_key("Reset PASSWORD?") == "resetpassword"


def test_non_text_detection() -> None:
    assert is_non_text("锟斤拷\ufffd", 0.3)
    assert is_non_text("!!!-----......", 0.3)
    assert is_non_text("👍👍👍", 0.3)
    assert not is_non_text("请拨打400-820-8820。", 0.3)
    assert not is_non_text("https://www.cloudmax.com/free", 0.3)


def test_truncate_at_sentence_end() -> None:
    text = "第一句。第二句！第三句很长很长。"
    assert truncate_at_sentence(text, 9) == "第一句。第二句！"
    assert truncate_at_sentence(text, 3) is None
    # "1." in a number or a URL is not a sentence end; a closing quote stays with its sentence.
    assert truncate_at_sentence("版本1.5GB见a.com/x。然后", 17) == "版本1.5GB见a.com/x。"
    assert truncate_at_sentence("点击「确定。」然后继续", 8) == "点击「确定。」"


OPTS = IngestOptions(min_question_chars=2, max_question_chars=20, min_answer_chars=2, max_answer_chars=12)


@pytest.mark.parametrize(
    ("question", "answer", "reason"),
    [
        ("", "答案。", "empty_question"),
        ("问题？", "", "empty_answer"),
        ("问题？", "\ufffd\ufffd", "non_text"),
        ("如何注册？", "如何注册。", "question_equals_answer"),
        ("嗯", "答案。", "question_too_short"),
        ("问" * 21, "答案。", "question_too_long"),
        ("问题？", "好", "answer_too_short"),
        ("问题？", "答案很长很长很长很长很长很长。", "answer_too_long"),
    ],
)
def test_filter_reasons(question: str, answer: str, reason: str) -> None:
    assert filter_pair(QAPair(question, "", answer), OPTS) == (None, reason)


def test_filter_keeps_good_pair_unchanged() -> None:
    pair = QAPair("如何注册？", "", "点击注册。")
    assert filter_pair(pair, OPTS) == (pair, None)


def test_overlong_answer_truncates_at_sentence_end_when_asked() -> None:
    opts = OPTS.model_copy(update={"overlong": "truncate"})
    kept, reason = filter_pair(QAPair("问题？", "", "第一句话。第二句话很长很长很长。"), opts)
    assert reason is None and kept is not None
    assert kept.output == "第一句话。"
    # No sentence end inside the limit: dropped even in truncate mode.
    assert filter_pair(QAPair("问题？", "", "没有句号的一段很长很长很长的话"), opts) == (None, "answer_too_long")


def test_a_customers_words_are_normalized_then_redacted_wherever_they_leave_the_answer_log() -> None:
    # Full-width digits and ＠ (a Chinese keyboard's) are masked as their ASCII forms are; redacting twice changes
    # nothing, so a release that redacts again keeps the live wording.
    once = redact_customer_text("手机１３８１２３４５６７８收不到短信，邮箱 ｚｈａｎｇ＠ｑｑ．ｃｏｍ")
    assert once == "手机[PHONE]收不到短信，邮箱 [EMAIL]"
    assert redact_customer_text(once) == once
