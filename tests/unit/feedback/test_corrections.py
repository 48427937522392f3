"""Folding corrections into a dataset: replace by normalized question, clean/redact, corrections train, regression."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from libs.common.knowledge import entry_id_for
from libs.datasets.dedup import question_key
from libs.datasets.options import IngestOptions
from libs.datasets.pipeline import prepare_dataset, write_dataset
from libs.datasets.records import QAPair
from libs.datasets.split import assign_side
from services.feedback.corrections import REGRESSION_FILE, Correction, Wording, build_release, options_of
from services.feedback.errors import FeedbackError

FAQ = [
    ("如何注册CloudMax账号？", "打开官网，点击右上角「注册」，填写手机号并输入短信验证码即可完成注册。"),
    ("忘记登录密码怎么办？", "访问登录页，点击「忘记密码」，验证身份后设置新密码。"),
    ("如何开具发票？", "进入「费用中心」-「发票管理」，选择订单后提交开票申请。"),
    ("云服务器如何续费？", "在「续费管理」中选择实例并支付即可。"),
    ("如何查看账单明细？", "进入「费用中心」-「账单管理」查看每月明细。"),
    ("怎样开启二次验证？", "在「安全设置」中开启虚拟MFA并扫码绑定。"),
    ("对象存储怎么收费？", "按存储容量、请求次数和外网流出流量计费。"),
    ("如何联系人工客服？", "在控制台右下角点击「在线客服」即可转人工。"),
]


def rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def answers_by_question(dataset: Path, name: str) -> dict[str, str]:
    return {r["instruction"]: r["output"] for r in rows(dataset / name)}


@pytest.fixture
def parent(tmp_path: Path) -> Path:
    # A high eval ratio so a corrected question easily hashes into eval (the case that must be moved to train).
    options = IngestOptions(eval_ratio=0.5)
    prepared = prepare_dataset([{"question": q, "answer": a} for q, a in FAQ], options, source="faq.jsonl")
    out = tmp_path / prepared.dataset_id
    write_dataset(prepared, out)
    return out


def build(parent: Path, tmp_path: Path, corrections: list[Correction], name: str = "new") -> tuple[Path, str, dict]:
    out = tmp_path / name
    dataset_id, card = build_release(parent, parent.name, corrections, [c.flag_id for c in corrections], out)
    return out, dataset_id, card


def test_correction_replaces_the_row_of_the_same_normalized_question(parent: Path, tmp_path: Path) -> None:
    fix = "进入「费用中心」-「发票管理」，勾选订单，填写抬头后提交，电子发票1个工作日内发到邮箱。"
    out, dataset_id, card = build(parent, tmp_path, [Correction("fl-1", "  如何开具发票?  ", fix)])
    train = answers_by_question(out, "train.jsonl")
    everything = {**train, **answers_by_question(out, "eval.jsonl")}
    assert len(everything) == len(FAQ)  # replaced, not added
    corrected = [q for q, a in everything.items() if a == fix]
    assert len(corrected) == 1 and corrected[0] in train
    assert card["parent_dataset_id"] == parent.name and card["feedback"]["flag_ids"] == ["fl-1"]
    assert card["feedback"]["rows_replaced"] == 1
    assert json.loads((out / "card.json").read_text())["dataset_id"] == dataset_id != parent.name


def test_near_duplicate_wording_is_replaced_too(parent: Path, tmp_path: Path) -> None:
    # Jaccard of character 3-grams 7/8 >= 0.7: what dedup would call the same question.
    out, _, card = build(
        parent, tmp_path, [Correction("fl-1", "忘记登录密码怎么办呀", "请在登录页点「忘记密码」重置。")]
    )
    everything = {**answers_by_question(out, "train.jsonl"), **answers_by_question(out, "eval.jsonl")}
    assert "忘记登录密码怎么办？" not in everything  # the FAQ row with the old answer is gone
    assert everything["忘记登录密码怎么办呀"] == "请在登录页点「忘记密码」重置。"
    assert card["feedback"]["rows_replaced"] == 1


def test_a_merely_similar_question_is_not_replaced(parent: Path, tmp_path: Path) -> None:
    # 3-gram Jaccard 0.5: dedup would keep both, so both stay.
    out, _, card = build(
        parent, tmp_path, [Correction("fl-1", "忘记登录密码了怎么办", "请在登录页点「忘记密码」重置。")]
    )
    everything = {**answers_by_question(out, "train.jsonl"), **answers_by_question(out, "eval.jsonl")}
    assert "忘记登录密码怎么办？" in everything and "忘记登录密码了怎么办" in everything
    assert card["feedback"]["rows_replaced"] == 0


def test_new_question_is_appended_and_always_lands_in_train(parent: Path, tmp_path: Path) -> None:
    options = options_of(json.loads((parent / "card.json").read_text()))
    candidates = [f"如何申请第{n}个免费的测试实例？" for n in range(40)]
    in_eval = next(
        q for q in candidates if assign_side(question_key(QAPair(q, "", "")), 0.5, options.split_seed) == "eval"
    )
    out, _, card = build(parent, tmp_path, [Correction("fl-9", in_eval, "在活动页面领取即可，每个账号限一台。")])
    assert in_eval in answers_by_question(out, "train.jsonl")
    assert in_eval not in answers_by_question(out, "eval.jsonl")
    assert card["split"]["corrections_moved_to_train"] == 1
    assert card["counts"]["train"] + card["counts"]["eval"] == len(FAQ) + 1


def test_regression_set_holds_every_correction_cleaned_and_redacted(parent: Path, tmp_path: Path) -> None:
    corrections = [
        Correction("fl-1", "如何开具发票？", "<p>请拨打 13812345678 联系财务开票。</p>"),
        Correction("fl-2", "人工客服几点上班？", "人工客服 7×24 小时在线。"),
    ]
    out, _, card = build(parent, tmp_path, corrections)
    regression = rows(out / REGRESSION_FILE)
    assert [set(r) for r in regression] == [{"instruction", "input", "output"}] * 2
    by_q = {r["instruction"]: r["output"] for r in regression}
    assert by_q["如何开具发票？"] == "请拨打 [PHONE] 联系财务开票。"  # HTML stripped, phone redacted, like ingest
    assert card["counts"]["regression"] == 2


def test_newest_correction_of_a_question_wins(parent: Path, tmp_path: Path) -> None:
    corrections = [
        Correction("fl-1", "如何开具发票？", "旧的更正答案。"),
        Correction("fl-2", "如何开具发票", "新的更正答案。"),
    ]
    out, _, _ = build(parent, tmp_path, corrections)
    assert [r["output"] for r in rows(out / REGRESSION_FILE)] == ["新的更正答案。"]


def test_release_is_content_addressed(parent: Path, tmp_path: Path) -> None:
    fix = [Correction("fl-1", "如何开具发票？", "在发票管理中申请。")]
    _, first, _ = build(parent, tmp_path, fix, "a")
    _, again, _ = build(parent, tmp_path, fix, "b")
    _, other, _ = build(parent, tmp_path, [Correction("fl-1", "如何开具发票？", "联系财务。")], "c")
    assert first == again != other


def test_a_correction_that_changes_no_row_still_makes_a_new_version(parent: Path, tmp_path: Path) -> None:
    # Same answer as the FAQ already has: train/eval are byte-identical, only regression.jsonl is new.
    _, dataset_id, _ = build(parent, tmp_path, [Correction("fl-1", FAQ[2][0], FAQ[2][1])])
    assert dataset_id != parent.name


def test_no_usable_correction_is_a_clear_error(parent: Path, tmp_path: Path) -> None:
    with pytest.raises(FeedbackError) as err:
        build(parent, tmp_path, [Correction("fl-1", "如何开具发票？", "-")])
    assert err.value.code == "no_usable_corrections"


def test_options_come_from_the_parent_card_without_the_secret_words() -> None:
    card = {"options": {**IngestOptions(eval_ratio=0.3).public_summary(), "question_field": "q"}}
    options = options_of(card)
    assert options.eval_ratio == 0.3 and options.question_field is None and options.sensitive_words == ()
    assert options_of({"options": {"eval_ratio": 7}}) == IngestOptions()  # unreadable: defaults


def test_a_correction_keeps_the_similar_questions_and_wording_of_the_row_it_replaces(tmp_path: Path) -> None:
    records = [{"question": q, "answer": a} for q, a in FAQ]
    records[2]["similar"] = ["发票在哪开", "开票入口"]
    prepared = prepare_dataset(records, IngestOptions(eval_ratio=0), source="faq.jsonl")
    parent = tmp_path / prepared.dataset_id
    write_dataset(prepared, parent)
    out, _, _ = build(parent, tmp_path, [Correction("fl-1", "如何开具发票呢？", "在「发票管理」提交申请。")])
    fixed = next(r for r in rows(out / "train.jsonl") if r["output"] == "在「发票管理」提交申请。")
    # the FAQ's wording, replaced by the agent's near-duplicate one, stays a way to reach the entry
    assert fixed["instruction"] == "如何开具发票呢？"
    assert fixed["similar"] == ["如何开具发票？", "发票在哪开", "开票入口"]
    knowledge = [json.loads(line) for line in (out / "knowledge.jsonl").read_text("utf-8").splitlines()]
    assert sum(bool(e.get("similar")) for e in knowledge) == 1


def test_approved_wordings_join_their_entries_similar_questions(parent: Path, tmp_path: Path) -> None:
    wordings = [
        Wording("fl-1", entry_id_for("如何开具发票？"), "发票在哪弄"),
        Wording("fl-2", entry_id_for("这个条目不存在？"), "随便问问"),
    ]
    out = tmp_path / "new"
    dataset_id, card = build_release(parent, parent.name, [], ["fl-1", "fl-2"], out, wordings)
    rows_by_question = {r["instruction"]: r for name in ("train.jsonl", "eval.jsonl") for r in rows(out / name)}
    assert rows_by_question["如何开具发票？"]["similar"] == ["发票在哪弄"]
    assert len(rows_by_question) == len(FAQ)  # no row added, none replaced
    assert card["feedback"]["similar_questions_added"] == 1 and card["feedback"]["similar_questions_unplaced"] == 1
    assert dataset_id != parent.name and (out / REGRESSION_FILE).read_bytes() == b""
