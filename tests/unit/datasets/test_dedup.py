"""Exact and near-duplicate removal keeps the better-formed row and leaves distinct questions alone."""

from __future__ import annotations

import json
import random
from pathlib import Path

from libs.datasets.cleaning import canonical_key
from libs.datasets.dedup import MinHasher, dedup, form_score, jaccard, lsh_shape, shingles
from libs.datasets.records import QAPair


def pairs(*rows: tuple[str, str]) -> list[QAPair]:
    return [QAPair(q, "", a) for q, a in rows]


def test_exact_duplicates_after_normalization_keep_the_better_row() -> None:
    rows = pairs(
        ("如何重置登录密码", "点这里"),
        ("如何 重置 登录密码？", "在登录页点击「忘记密码」，通过手机验证码重置。"),
        ("域名解析多久生效？", "一般10分钟内生效。"),
    )
    result = dedup(rows)
    assert result.kept == (1, 2)
    assert (result.exact, result.near) == (1, 0)


def test_near_duplicate_is_removed_and_the_better_formed_row_kept() -> None:
    rows = pairs(
        ("请问如何重置登录密码", "点这里"),
        ("如何重置登录密码？", "在登录页点击「忘记密码」，通过手机验证码重置。"),
        ("如何申请增值税专用发票？", "企业认证后在「发票管理」中申请。"),
    )
    result = dedup(rows)
    assert result.kept == (1, 2)
    assert (result.exact, result.near) == (0, 1)


def test_placeholders_make_a_row_worse_formed() -> None:
    redacted = QAPair("如何联系客服？", "", "请拨打[PHONE]联系客服人员。")
    clean = QAPair("如何联系客服？", "", "请拨打400-820-8820。")
    assert form_score(clean) > form_score(redacted)
    assert dedup([redacted, clean]).kept == (1,)


def test_ties_keep_the_first_row() -> None:
    rows = pairs(("如何重置密码？", "答案甲。"), ("如何重置密码?", "答案乙。"))
    assert dedup(rows).kept == (0,)


def test_threshold_is_configurable() -> None:
    rows = pairs(("请问如何重置登录密码", "答案一。"), ("如何重置登录密码？", "答案二。"))
    similarity = jaccard(
        shingles(canonical_key(rows[0].instruction), 3), shingles(canonical_key(rows[1].instruction), 3)
    )
    assert 0.7 <= similarity < 0.9
    assert dedup(rows, threshold=0.7).near == 1
    assert dedup(rows, threshold=0.9).near == 0
    assert dedup(rows, near=False).kept == (0, 1)


def test_different_questions_with_shared_words_are_kept() -> None:
    rows = pairs(
        ("如何注册CloudMax账号？", "点击「注册」。"),
        ("如何注销CloudMax账号？", "在「账号中心」提交注销申请。"),
        ("忘记登录密码怎么办？", "点击「忘记密码」。"),
        ("忘记了云服务器的登录密码怎么办？", "在控制台重置实例密码。"),
    )
    assert dedup(rows).kept == (0, 1, 2, 3)


def test_context_is_part_of_the_question() -> None:
    rows = [
        QAPair("回答客户的问题", "如何续费？", "在续费管理中续费。"),
        QAPair("回答客户的问题", "如何退款？", "在订单页退订。"),
    ]
    assert dedup(rows).kept == (0, 1)


def test_lsh_recall_at_threshold() -> None:
    for threshold in (0.5, 0.7, 0.9):
        bands, rows = lsh_shape(128, threshold)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.99


def test_minhash_estimates_jaccard_and_is_deterministic() -> None:
    a = shingles("如何重置云服务器的登录密码", 3)
    b = shingles("如何重置云服务器的远程登录密码", 3)
    sig_a, sig_b = MinHasher(256).signature(a), MinHasher(256).signature(b)
    assert (sig_a == MinHasher(256).signature(a)).all()
    estimate = float((sig_a == sig_b).mean())
    assert abs(estimate - jaccard(a, b)) < 0.15


def test_many_rows_near_duplicates_found_through_lsh() -> None:
    rng = random.Random(7)
    pool = [chr(c) for c in range(0x4E00, 0x4E00 + 800)]
    base = ["".join(rng.choices(pool, k=12)) + "？" for _ in range(300)]
    rows = [QAPair(q, "", "见价格页。") for q in base] + [QAPair("请问" + q, "", "见价格页。") for q in base[:50]]
    result = dedup(rows, threshold=0.7)
    assert result.near == 50
    assert len(result.kept) == 300


def test_bundled_sample_has_no_duplicates() -> None:
    path = Path(__file__).resolve().parents[3] / "data" / "sample" / "cloudmax_faq.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = dedup([QAPair(r["question"], "", r["answer"]) for r in rows])
    assert (result.exact, result.near) == (0, 0)


def test_every_dropped_row_names_the_kept_row_it_duplicates() -> None:
    rows = pairs(
        ("请问如何重置登录密码", "点这里"),  # near duplicate of 1
        ("如何重置登录密码？", "在登录页点击「忘记密码」，通过手机验证码重置。"),
        ("请问 如何重置登录密码！", "短"),  # exact duplicate of 0, which is itself dropped for 1
        ("如何申请增值税专用发票？", "企业认证后在「发票管理」中申请。"),
    )
    result = dedup(rows)
    assert result.kept == (1, 3) and result.into == {0: 1, 2: 1}
    assert dedup(rows, near=False).into == {2: 0}
