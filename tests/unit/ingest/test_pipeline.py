"""prepare_dataset end to end on the shipped files; the dataset id; the atomic write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from libs.common.knowledge import entry_id_for, read_entries
from libs.datasets.options import IngestOptions
from libs.datasets.pipeline import PreparedDataset, count_tokens, length_stats, prepare_dataset, write_dataset
from services.ingest.errors import IngestError
from services.ingest.sources import read_records

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample" / "cloudmax_faq.jsonl"


def prepare(path: Path, **options: object) -> PreparedDataset:
    return prepare_dataset(read_records(str(path)), IngestOptions(**options), source=str(path))


def all_pairs(prepared: PreparedDataset) -> list:
    return [*prepared.train, *prepared.eval]


def test_bundled_sample_is_clean_and_complete() -> None:
    prepared = prepare(SAMPLE)
    counts = prepared.card["counts"]
    assert 70 <= counts["read"] <= 90
    assert counts["kept"] == counts["read"]
    assert prepared.card["dropped"] == {} and prepared.card["pii_redacted"] == {}
    assert prepared.card["duplicates_removed"] == {"exact": 0, "near": 0}
    assert counts["train"] + counts["eval"] == counts["kept"] and counts["eval"] >= 1
    assert any("400-820-8820" in p.output for p in all_pairs(prepared))
    assert prepared.card["lengths"]["chars"]["answer"]["p95"] <= 120


def test_card_reports_drops_by_reason(fixtures: Path) -> None:
    card = prepare(fixtures / "faq_filters.jsonl").card
    assert card["counts"]["read"] == 9
    assert card["dropped"] == {
        "answer_too_long": 1,
        "empty_answer": 1,
        "empty_question": 1,
        "non_text": 3,
        "question_equals_answer": 1,
        "question_too_short": 1,
    }
    assert card["counts"]["kept"] == 1 and card["truncated"] == 0


def test_overlong_answers_can_be_truncated(fixtures: Path) -> None:
    prepared = prepare(fixtures / "faq_filters.jsonl", overlong="truncate")
    assert prepared.card["truncated"] == 1 and "answer_too_long" not in prepared.card["dropped"]
    long_row = next(p for p in all_pairs(prepared) if p.instruction == "这个问题的答案太长了吗？")
    assert len(long_row.output) <= 1024 and long_row.output.endswith("。")


def test_pii_is_redacted_before_anything_is_written(fixtures: Path) -> None:
    prepared = prepare(fixtures / "faq_pii.jsonl")
    assert prepared.card["pii_redacted"] == {"bank_card": 2, "email": 2, "id_card": 2, "phone": 6}
    written = b"".join(prepared.files().values()).decode()
    for secret in ("13800138000", "139-1234-5678", "example.com", "440305199003071236", "6222 0212", "7893"):
        assert secret not in written
    assert "400-820-8820" in written and "800-820-8820" in written
    assert "440305199003071237" in written and "6217 0012 3456 7891" in written


def test_duplicates_are_counted_and_the_best_row_kept(fixtures: Path) -> None:
    prepared = prepare(fixtures / "faq_dups.jsonl")
    assert prepared.card["duplicates_removed"] == {"exact": 3, "near": 1}
    outputs = {p.instruction: p.output for p in all_pairs(prepared)}
    assert outputs["如何重置登录密码？"] == "在登录页点击「忘记密码」，通过手机验证码重置。"
    assert outputs["How do I reset my PASSWORD?"] == "Click 'Forgot password' on the login page."
    assert len(outputs) == 4
    # a dropped duplicate is another way to ask: its distinct wording lives on as a similar question of the kept row
    similar = {p.instruction: p.similar for p in all_pairs(prepared)}
    assert similar["如何重置登录密码？"] == ("请问如何重置登录密码？",)  # the exact repeats add nothing new
    assert similar["How do I reset my PASSWORD?"] == ()  # "how do i reset my password" is the same wording


def test_instruction_input_output_source(fixtures: Path) -> None:
    prepared = prepare(fixtures / "faq_alpaca.jsonl", eval_ratio=0)
    assert [(p.instruction, p.input) for p in prepared.train] == [
        ("回答客户的问题", "云服务器到期后数据保留多久？"),
        ("回答客户的问题", "如何开启自动续费？"),
        ("如何提交工单？", ""),
    ]


def test_html_source_is_cleaned(fixtures: Path) -> None:
    outputs = [p.output for p in all_pairs(prepare(fixtures / "faq_html.json"))]
    assert "打开登录页\n点击「忘记密码」" in outputs
    assert "请看 帮助中心 (https://docs.cloudmax.com/start?a=1&b=2)。" in outputs
    assert all("<" not in o or "< 100GB" in o for o in outputs)


def test_gbk_and_bom_csv_give_clean_text(fixtures: Path) -> None:
    gbk = prepare(fixtures / "faq_gbk.csv", eval_ratio=0).train
    assert gbk[1].instruction == "ECS实例如何重启？" and "1~2分钟" in gbk[1].output
    bom = prepare(fixtures / "faq_utf8_bom.csv", eval_ratio=0).train
    assert bom[0].output == "步骤：1. 访问登录页。2. 点击「忘记密码」"


def test_sqlite_source_drops_blob_and_null(sqlite_db: Path) -> None:
    records = read_records(str(sqlite_db), query="SELECT q AS question, a AS answer FROM faq")
    card = prepare_dataset(records, source=str(sqlite_db)).card
    assert card["counts"]["kept"] == 3 and card["dropped"] == {"empty_answer": 1, "non_text": 1}


def test_dataset_id_is_stable_and_ignores_the_source_name(fixtures: Path, tmp_path: Path) -> None:
    first = prepare(fixtures / "faq_pii.jsonl")
    copy = tmp_path / "other-name.jsonl"
    copy.write_bytes((fixtures / "faq_pii.jsonl").read_bytes())
    assert prepare(fixtures / "faq_pii.jsonl").dataset_id == first.dataset_id == prepare(copy).dataset_id
    assert first.dataset_id.startswith("ds-") and len(first.dataset_id) == 19


def test_dataset_id_changes_with_content_and_options(tmp_path: Path) -> None:
    rows = [{"question": f"第{i}个问题是什么？", "answer": f"这是第{i}个答案。"} for i in range(20)]
    base = prepare_dataset(rows).dataset_id
    changed = [*rows[:-1], {"question": "第19个问题是什么？", "answer": "这是改过的答案。"}]
    assert prepare_dataset(changed).dataset_id != base
    assert prepare_dataset(rows, IngestOptions(eval_ratio=0.3)).dataset_id != base
    assert prepare_dataset(rows, IngestOptions(sensitive_words=("内部",))).dataset_id != base
    # Equivalent spellings of the same options are the same settings.
    assert prepare_dataset(rows, IngestOptions(pii_kinds=("phone", "email", "id_card", "bank_card"))).dataset_id == (
        prepare_dataset(rows, IngestOptions(pii_kinds=("bank_card", "id_card", "email", "phone"))).dataset_id
    )


def test_jsonl_lines_are_utf8_with_the_three_fields(fixtures: Path) -> None:
    files = prepare(fixtures / "faq_gbk.csv", eval_ratio=0).files()
    lines = files["train.jsonl"].decode("utf-8").splitlines()
    assert "如何申请发票" in lines[0]  # ensure_ascii=False: no \\u escapes
    assert all(list(json.loads(line)) == ["instruction", "input", "output"] for line in lines)
    assert files["eval.jsonl"] == b""


class CharTokenizer:
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text] + ([0] if add_special_tokens else [])


class TiktokenLike:
    def encode(self, text: str) -> list[int]:
        return list(range(len(text.split())))


def test_token_stats_only_with_a_tokenizer(fixtures: Path) -> None:
    records = list(read_records(str(fixtures / "faq_gbk.csv")))
    assert "tokens" not in prepare_dataset(records).card["lengths"]
    lengths = prepare_dataset(records, tokenizer=CharTokenizer()).card["lengths"]
    assert lengths["tokens"] == lengths["chars"]
    assert count_tokens(TiktokenLike(), "a b c") == 3


def test_length_stats() -> None:
    assert length_stats([5, 1, 3, 2, 4]) == {"min": 1, "max": 5, "mean": 3.0, "p50": 3, "p95": 5, "total": 15}
    assert length_stats([])["total"] == 0


def test_empty_and_fully_dropped_sources_are_errors() -> None:
    with pytest.raises(IngestError, match=r"faq\.csv: no records"):
        prepare_dataset([], source="faq.csv")
    with pytest.raises(IngestError, match=r"no usable rows; all 2 records were dropped \(empty_answer: 2\)"):
        prepare_dataset([{"question": "问题一？", "answer": ""}, {"question": "问题二？", "answer": " "}])


def test_sensitive_rows_can_be_dropped() -> None:
    rows = [
        {"question": "天穹计划什么时候上线？", "answer": "暂无消息。"},
        {"question": "如何注册？", "answer": "点击注册。"},
    ]
    masked = prepare_dataset(rows, IngestOptions(sensitive_words=("天穹计划",), eval_ratio=0))
    assert masked.train[0].instruction == "[SENSITIVE]什么时候上线？"
    assert masked.card["pii_redacted"] == {"sensitive_word": 1}
    assert masked.card["options"]["sensitive_words"] == 1  # the card never repeats the words themselves
    dropped = prepare_dataset(rows, IngestOptions(sensitive_words=("天穹计划",), sensitive_action="drop"))
    assert dropped.card["dropped"] == {"sensitive_word": 1} and dropped.card["counts"]["kept"] == 1


def test_write_dataset_writes_the_dataset_files(fixtures: Path, tmp_path: Path) -> None:
    prepared = prepare(fixtures / "faq_pii.jsonl")
    out = tmp_path / "a" / "b" / "ds"
    assert write_dataset(prepared, out) == prepared.dataset_id
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "eval.jsonl", "knowledge.jsonl", "train.jsonl"]
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    assert card["dataset_id"] == prepared.dataset_id and card["counts"]["kept"] == 9
    # The knowledge base: every kept row (train AND eval), each with the id its question gives it.
    kb = read_entries(out / "knowledge.jsonl")
    rows = [*prepared.train, *prepared.eval]
    assert len(kb) == card["knowledge"]["entries"] == 9
    assert [e.entry_id for e in kb] == [entry_id_for(p.instruction) for p in rows]
    assert [e.answer for e in kb] == [p.output for p in rows]
    assert card["knowledge"]["index"]["k1"] == 1.2
    assert [p.name for p in out.parent.iterdir()] == ["ds"]  # no temp dir left behind


def test_write_dataset_replaces_a_previous_dataset(fixtures: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    write_dataset(prepare(fixtures / "faq_pii.jsonl"), out)
    second = prepare(fixtures / "faq_gbk.csv")
    write_dataset(second, out)
    assert json.loads((out / "card.json").read_text(encoding="utf-8"))["dataset_id"] == second.dataset_id
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_write_dataset_refuses_a_directory_with_other_files(fixtures: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(IngestError, match=r"holds other files \(notes\.txt\)"):
        write_dataset(prepare(fixtures / "faq_pii.jsonl"), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_failed_write_leaves_nothing_half_written(
    fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = prepare(fixtures / "faq_pii.jsonl")
    out = tmp_path / "ds"

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(IngestError, match="ds: cannot write the dataset: No space left on device"):
        write_dataset(prepared, out)
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_the_previous_dataset(
    fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ds"
    first = prepare(fixtures / "faq_pii.jsonl")
    write_dataset(first, out)
    real_replace = os.replace

    def fail_on_new(src: object, dst: object) -> None:
        if str(src).endswith(".tmp"):
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_new)
    with pytest.raises(IngestError, match="Input/output error"):
        write_dataset(prepare(fixtures / "faq_gbk.csv"), out)
    assert json.loads((out / "card.json").read_text(encoding="utf-8"))["dataset_id"] == first.dataset_id
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_the_bundled_sample_keeps_its_similar_questions() -> None:
    prepared = prepare(SAMPLE)
    assert prepared.card["knowledge"]["similar_questions"] >= 4 * prepared.card["counts"]["kept"]
    assert all(e.similar for e in prepared.knowledge())


def test_similar_questions_are_cleaned_redacted_and_deduplicated(tmp_path: Path) -> None:
    rows = [
        {
            "question": "如何申请退款？",
            "answer": "在「订单」页面点击退款。",
            "相似问": ["钱怎么退回来", " 钱怎么退回来！", "如何申请退款", "", "退款找13812345678", "★★★"],
        },
        {"question": "如何开发票？", "answer": "在费用中心申请。"},
    ]
    prepared = prepare_dataset(rows, IngestOptions(eval_ratio=0))
    refund = next(p for p in prepared.train if p.instruction == "如何申请退款？")
    assert refund.similar[0] == "钱怎么退回来" and len(refund.similar) == 2  # repeats, the question, empties gone
    assert "13812345678" not in refund.similar[1] and "退款找" in refund.similar[1]  # PII redacted as everywhere
    assert prepared.card["knowledge"]["similar_questions"] == 2
    assert prepared.card["knowledge"]["similar_dropped"] == 4
    lines = prepared.files()["train.jsonl"].decode().splitlines()
    # rows without similar questions are written exactly as before; the list is part of the content id
    assert {tuple(json.loads(line)) for line in lines} == {
        ("instruction", "input", "output", "similar"),
        ("instruction", "input", "output"),
    }
    edited = [{**rows[0], "相似问": ["钱怎么退回来"]}, rows[1]]
    assert prepare_dataset(edited, IngestOptions(eval_ratio=0)).dataset_id != prepared.dataset_id


def test_similar_questions_from_a_text_column_and_a_named_field(tmp_path: Path) -> None:
    csv = tmp_path / "faq.csv"
    csv.write_text("question,answer,alts\n如何退款？,在订单页申请。,钱怎么退回来|退订入口<br>退款在哪\n", "utf-8")
    prepared = prepare(csv, eval_ratio=0, similar_field="alts")
    # split after cleaning too: a cell's <br> is a line break, each line one wording
    assert prepared.train[0].similar == ("钱怎么退回来", "退订入口", "退款在哪")
    assert prepared.card["fields"]["similar"] == "alts"
    assert prepare(csv, eval_ratio=0, similar_field="ALTS").train[0].similar == prepared.train[0].similar
    with pytest.raises(IngestError, match=r"no record has the similar-questions field 'nope'"):
        prepare(csv, similar_field="nope")
    # a named field the first record leaves out (JSON lines without similar questions on that row) is still read
    rows = [
        {"question": "如何开票？", "answer": "在费用中心申请。"},
        {"question": "如何退款？", "answer": "在订单页申请。", "alts": ["钱怎么退"]},
    ]
    assert (
        prepare_dataset(rows, IngestOptions(similar_field="alts", eval_ratio=0)).card["knowledge"]["similar_questions"]
        == 1
    )


def test_an_item_that_is_not_text_costs_that_item_not_the_row() -> None:
    rows = [
        {"question": "如何退款？", "answer": "在订单页申请。", "similar": [{"q": 1}, None, "钱怎么退回来", 12306]},
        {"question": "如何开票？", "answer": "在费用中心申请。"},
    ]
    prepared = prepare_dataset(rows, IngestOptions(eval_ratio=0))
    assert prepared.card["counts"]["kept"] == 2 and prepared.card["dropped"] == {}
    refund = next(p for p in prepared.train if p.instruction == "如何退款？")
    assert refund.similar == ("钱怎么退回来", "12306") and prepared.card["knowledge"]["similar_dropped"] == 2


def test_a_wording_must_lead_to_one_answer() -> None:
    rows = [
        {"question": "如何退款？", "answer": "在订单页申请。", "similar": ["钱怎么退", "如何开票", "退订入口"]},
        {"question": "如何开票？", "answer": "在费用中心申请。", "similar": ["退订入口", "发票在哪开"]},
    ]
    prepared = prepare_dataset(rows, IngestOptions(eval_ratio=0))
    by_question = {p.instruction: p.similar for p in prepared.train}
    # another row's question, and a wording both rows list, are nobody's
    assert by_question == {"如何退款？": ("钱怎么退",), "如何开票？": ("发票在哪开",)}
    assert prepared.card["knowledge"]["similar_dropped"] == 3


def test_a_similar_question_with_a_word_to_drop_goes_alone() -> None:
    rows = [
        {"question": "如何注册？", "answer": "点击注册。", "similar": ["天穹计划怎么注册", "注册入口在哪"]},
        {"question": "如何开票？", "answer": "在费用中心申请。"},
    ]
    options = IngestOptions(sensitive_words=("天穹计划",), sensitive_action="drop", eval_ratio=0)
    prepared = prepare_dataset(rows, options)
    assert prepared.card["counts"]["kept"] == 2 and prepared.card["dropped"] == {}
    assert prepared.train[0].similar == ("注册入口在哪",) and prepared.card["knowledge"]["similar_dropped"] == 1


def test_a_duplicate_passes_on_only_wordings_no_other_row_asks_and_its_pii_is_counted() -> None:
    rows = [
        {"question": "物流多久到？", "answer": "发货后3天内送达。", "similar": ["订单发货后多久能到"]},
        {"question": "如何退货？", "answer": "在订单页申请退货，审核后寄回即可。"},
        # a near duplicate of 如何退货, worse formed; its similar questions: one is 物流多久到's, one has a phone
        {"question": "如何退货", "answer": "申请", "similar": ["订单发货后多久能到", "退货寄到13812345678吗"]},
        {"question": "发票怎么开？", "answer": "在费用中心申请。", "Similar": ["开票入口"]},
    ]
    prepared = prepare_dataset(rows, IngestOptions(eval_ratio=0, similar_field="similar"))
    by_question = {p.instruction: p.similar for p in prepared.train}
    assert by_question["物流多久到？"] == ("订单发货后多久能到",)  # stays its own row's, not made shared and dropped
    assert by_question["如何退货？"] == ("退货寄到[PHONE]吗",)
    assert prepared.card["pii_redacted"] == {"phone": 1}
    assert by_question["发票怎么开？"] == ("开票入口",)  # the named field, matched ignoring case in any record
