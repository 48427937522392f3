"""Incremental detokenization never splits a multi-byte character and adds up to the full decode."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from services.builder.engine import TextStream, encode_question


def test_chinese_text_streams_whole_characters(base_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    text = "您好！退款将在七个工作日内原路退回，罕见字：龘靐齉。Email: support@cloudmax.com"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer)
    deltas = [stream.push(i) for i in ids]
    deltas.append(stream.flush())
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert any(d == "" for d in deltas[:-1])  # some tokens were partial characters and were held back


def test_special_tokens_are_not_streamed(base_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    stream = TextStream(tokenizer)
    assert stream.push(tokenizer.convert_tokens_to_ids("<|eot_id|>")) == ""
    assert stream.flush() == ""


def test_prompt_uses_the_chat_template_without_a_second_bos(base_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    ids = encode_question(tokenizer, "如何申请退款？")
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
