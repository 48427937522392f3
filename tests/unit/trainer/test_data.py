from __future__ import annotations

import json
from pathlib import Path

import pytest

from libs.common.prompting import SYSTEM_PROMPT
from services.trainer.data import (
    FaqRow,
    choose_max_length,
    dataset_id,
    percentile_nearest_rank,
    read_rows,
    to_dataset,
    token_lengths,
)
from tests.unit.trainer.conftest import FIXTURE_DATASET


def test_read_rows_of_fixture() -> None:
    rows = read_rows(FIXTURE_DATASET / "train.jsonl")
    assert len(rows) == 45
    answer = "打开官网点击右上角“注册”，填写手机号并输入短信验证码即可完成注册。"
    assert rows[0] == FaqRow("如何注册CloudMax账号？", "", answer)
    assert read_rows(FIXTURE_DATASET / "missing.jsonl") == []


def test_row_without_answer_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"instruction": "问", "input": "", "output": ""}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.jsonl:1"):
        read_rows(path)


def test_dataset_id_from_card_else_dir_name(tmp_path: Path) -> None:
    assert dataset_id(FIXTURE_DATASET) == "fixture-cloudmax-v1"
    assert dataset_id(tmp_path) == tmp_path.name


def test_rows_become_conversational_prompt_completion() -> None:
    ds = to_dataset([FaqRow("怎么退款？", "订单号123", "在订单页申请。")])
    assert ds.column_names == ["prompt", "completion"]
    assert ds[0]["prompt"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "怎么退款？\n订单号123"},
    ]
    assert ds[0]["completion"] == [{"role": "assistant", "content": "在订单页申请。"}]


def test_percentile_nearest_rank() -> None:
    assert percentile_nearest_rank(list(range(1, 101)), 99) == 99
    assert percentile_nearest_rank([5], 99) == 5
    assert percentile_nearest_rank([1, 2, 3, 1000], 99) == 1000


@pytest.mark.parametrize(
    ("lengths", "kwargs", "expected"),
    [
        ([10, 20, 30], {}, 64),
        ([60, 64], {}, 64),
        ([65], {}, 128),
        ([*[50] * 99, 2000], {}, 64),  # one outlier in 100 is truncated rather than padding every batch to it
        ([50] * 10, {"observed": [100, 190]}, 192),
        ([50], {"override": 300}, 300),
        ([900], {"limit": 512}, 512),
        ([70], {"multiple": 32}, 96),
    ],
)
def test_choose_max_length(lengths: list[int], kwargs: dict, expected: int) -> None:
    assert choose_max_length(lengths, **kwargs) == expected


def test_token_lengths_count_the_whole_chat(tokenizer) -> None:
    row = FaqRow("怎么退款？", "", "在订单页申请。")
    (length,) = token_lengths(tokenizer, [row])
    prompt = to_dataset([row])[0]["prompt"]
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"]
    answer_ids = tokenizer("在订单页申请。<|eot_id|>", add_special_tokens=False).input_ids
    assert length == len(prompt_ids) + len(answer_ids)
