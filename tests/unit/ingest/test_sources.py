"""Readers for every file format, encoding detection, field mapping and their error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.datasets.records import FieldMapping, QAPair, display_source, extract_pair, resolve_mapping
from services.ingest.errors import IngestError
from services.ingest.sources import decode_bytes, detect_format, read_records


def test_gbk_csv_is_detected_and_decoded(fixtures: Path) -> None:
    rows = list(read_records(str(fixtures / "faq_gbk.csv")))
    assert [r["question"] for r in rows] == [
        "如何申请发票？",
        "ＥＣＳ实例如何重启？",
        "退款多久到账？",
        "客服电话是多少？",
    ]
    # A quoted field keeps its embedded line breaks.
    assert rows[2]["answer"].startswith("审核通过后：\r\n1. 余额支付立即退回。")


def test_utf8_bom_csv_header_is_clean(fixtures: Path) -> None:
    rows = list(read_records(str(fixtures / "faq_utf8_bom.csv")))
    assert list(rows[0]) == ["Question", "Answer"]
    assert rows[0]["Answer"] == "步骤：1. 访问登录页。2. 点击「忘记密码」"


def test_decode_prefers_utf8_and_falls_back_to_gb18030() -> None:
    assert decode_bytes("发票".encode(), "x") == "发票"
    assert decode_bytes("\ufeff发票".encode(), "x") == "发票"
    assert decode_bytes("发票".encode("gbk"), "x") == "发票"
    with pytest.raises(IngestError, match="not UTF-8 or GBK"):
        decode_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xff", "logo.png")


def test_tab_and_semicolon_csv(tmp_path: Path) -> None:
    tsv = tmp_path / "faq.csv"
    tsv.write_text("question\tanswer\n如何注册？\t点击注册，填写手机号。\n", encoding="utf-8")
    assert list(read_records(str(tsv))) == [{"question": "如何注册？", "answer": "点击注册，填写手机号。"}]
    semi = tmp_path / "semi.csv"
    semi.write_text("question;answer\n如何登录？;输入账号和密码。\n", encoding="utf-8")
    assert list(read_records(str(semi))) == [{"question": "如何登录？", "answer": "输入账号和密码。"}]


def test_csv_row_with_too_many_fields_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("question,answer\n如何注册？,点击注册。\n如何登录？,输入账号,再输入密码。\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"bad\.csv: line 3: 3 fields but the header has 2"):
        list(read_records(str(path)))


def test_json_list(fixtures: Path) -> None:
    rows = list(read_records(str(fixtures / "faq_html.json")))
    assert len(rows) == 6 and set(rows[0]) == {"question", "answer"}


def test_json_must_be_a_list_of_objects(tmp_path: Path) -> None:
    path = tmp_path / "obj.json"
    path.write_text('{"question": "如何注册？"}', encoding="utf-8")
    with pytest.raises(IngestError, match="expected a JSON list of objects, got a dict"):
        list(read_records(str(path)))
    path.write_text('[{"question": "q", "answer": "a"}, "oops"]', encoding="utf-8")
    with pytest.raises(IngestError, match="item 2: expected a JSON object"):
        list(read_records(str(path)))


def test_broken_json_names_file_and_line(fixtures: Path) -> None:
    with pytest.raises(IngestError, match=r"broken\.json: invalid JSON at line 3, column \d+"):
        list(read_records(str(fixtures / "broken.json")))


def test_broken_jsonl_names_the_line(fixtures: Path) -> None:
    with pytest.raises(IngestError, match=r"broken_line\.jsonl: line 3: invalid JSON"):
        list(read_records(str(fixtures / "broken_line.jsonl")))


def test_empty_missing_directory_and_unknown_sources(fixtures: Path, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"empty\.jsonl: file is empty"):
        read_records(str(fixtures / "empty.jsonl"))
    with pytest.raises(IngestError, match=r"nope\.csv: file not found"):
        read_records(str(tmp_path / "nope.csv"))
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(IngestError, match="is a directory"):
        read_records(str(tmp_path / "dir.json"))
    with pytest.raises(IngestError, match=r"cannot tell the format from the suffix '\.txt'; pass --format"):
        read_records(str(tmp_path / "faq.txt"))


def test_format_override(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text('{"question": "如何注册？", "answer": "点击注册。"}\n', encoding="utf-8")
    assert list(read_records(str(path), "jsonl")) == [{"question": "如何注册？", "answer": "点击注册。"}]
    with pytest.raises(IngestError, match="unknown format 'xml'"):
        detect_format(str(path), "xml")


def test_query_rules() -> None:
    with pytest.raises(IngestError, match="needs --query"):
        read_records("postgresql://u:secret@db/faq")
    with pytest.raises(IngestError, match="--query only applies to sqlite and postgres"):
        read_records("faq.csv", query="SELECT 1")


def test_sqlite_with_query(sqlite_db: Path) -> None:
    rows = list(read_records(str(sqlite_db), query="SELECT q AS question, a AS answer FROM faq ORDER BY id"))
    assert len(rows) == 5
    assert rows[0] == {"question": "如何续费云服务器？", "answer": "在「续费管理」中选择实例并支付即可。"}
    assert rows[2]["answer"] == b"\x89PNG\r\n"


def test_sqlite_errors(sqlite_db: Path, fixtures: Path) -> None:
    with pytest.raises(IngestError, match="SQLite query failed: no such table: nope"):
        list(read_records(str(sqlite_db), query="SELECT * FROM nope"))
    with pytest.raises(IngestError, match="SQLite query failed"):
        list(read_records(str(sqlite_db), query="DELETE FROM faq"))
    with pytest.raises(IngestError, match=r"faq_html\.json: not a SQLite database file"):
        list(read_records(str(fixtures / "faq_html.json"), "sqlite", query="SELECT 1"))


def test_display_source_hides_the_password() -> None:
    assert display_source("postgresql://kefu:s3cret@db:5432/faq") == "postgresql://kefu:***@db:5432/faq"
    assert display_source("postgresql://kefu@db/faq") == "postgresql://kefu@db/faq"
    assert display_source("data/faq.csv") == "data/faq.csv"


def test_mapping_autodetects_question_answer_case_insensitively() -> None:
    assert resolve_mapping(["Question", "Answer", "category"]) == FieldMapping("Question", "Answer", None)
    assert resolve_mapping(["question", "answer", "context"]) == FieldMapping("question", "answer", "context")


def test_mapping_autodetects_instruction_input_output() -> None:
    assert resolve_mapping(["instruction", "input", "output"]) == FieldMapping("instruction", "output", "input")
    assert resolve_mapping(["instruction", "output"]) == FieldMapping("instruction", "output", None)


def test_explicit_mapping() -> None:
    mapping = resolve_mapping(["标题", "内容", "分类"], question_field="标题", answer_field="内容", input_field="分类")
    assert mapping == FieldMapping("标题", "内容", "分类")


def test_wrong_columns_name_the_fields_found() -> None:
    with pytest.raises(IngestError) as err:
        resolve_mapping(["标题", "内容"], where="wrong_columns.csv")
    assert "wrong_columns.csv: no question/answer or instruction/input/output fields" in str(err.value)
    assert "fields found: '标题', '内容'" in str(err.value)
    with pytest.raises(IngestError, match=r"mapped field.*answer='答案' not found; fields found: '标题', '内容'"):
        resolve_mapping(["标题", "内容"], question_field="标题", answer_field="答案")


def test_extract_pair_converts_values() -> None:
    mapping = FieldMapping("q", "a", None)
    assert extract_pair({"q": "几核？", "a": 4}, mapping) == QAPair("几核？", "", "4")
    assert extract_pair({"q": "缺答案？"}, mapping) == QAPair("缺答案？", "", "")
    assert extract_pair({"q": "二进制？", "a": b"\x00"}, mapping) is None
    assert extract_pair({"q": "列表？", "a": ["x"]}, mapping) is None
    assert extract_pair({"q": "布尔？", "a": True}, mapping) is None
