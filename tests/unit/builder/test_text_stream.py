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


def test_a_long_answer_streams_exactly_its_full_decode(base_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    text = "步骤：1. 访问登录页。2. 点击「忘记密码」。" * 20 + " Call 400-820-1234, 🙂 ok."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer)
    streamed = "".join(stream.push(i) for i in ids) + stream.flush()
    assert streamed == tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert stream.prefix_offset == len(ids)  # the window moved along: each push decoded only a few ids
