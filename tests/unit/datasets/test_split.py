"""The split is a pure function of the question key: stable across datasets and close to the ratio."""

from __future__ import annotations

from libs.datasets.split import assign_side, split_keys, split_score


def test_same_question_lands_on_the_same_side_whatever_else_is_in_the_dataset() -> None:
    keys = [f"问题{i}" for i in range(200)]
    first = dict(zip(keys, split_keys(keys, 0.2), strict=True))
    others = [f"别的问题{i}" for i in range(300)] + keys[::-1]
    second = dict(zip(others, split_keys(others, 0.2), strict=True))
    assert all(first[k] == second[k] for k in keys)
    assert all(first[k] == assign_side(k, 0.2) for k in keys)


def test_ratio_is_respected_approximately() -> None:
    keys = [f"如何处理第{i}类问题" for i in range(2000)]
    share = split_keys(keys, 0.2).count("eval") / len(keys)
    assert 0.17 < share < 0.23


def test_seed_draws_another_split() -> None:
    keys = [f"q{i}" for i in range(200)]
    assert split_keys(keys, 0.3, seed="a") != split_keys(keys, 0.3, seed="b")
    assert split_score("q1", "a") == split_score("q1", "a")


def test_zero_ratio_puts_everything_in_train() -> None:
    assert set(split_keys([f"q{i}" for i in range(50)], 0.0)) == {"train"}


def test_tiny_dataset_still_gets_both_sides() -> None:
    keys = ["如何注册？", "如何登录？"]
    sides = split_keys(keys, 0.01)
    assert sorted(sides) == ["eval", "train"]
    assert split_keys(keys, 0.01) == sides
    assert sorted(split_keys(keys, 0.99)) == ["eval", "train"]


def test_train_is_never_empty() -> None:
    for ratio in (0.0, 0.5, 0.99):
        assert split_keys(["唯一的问题"], ratio) == ["train"]
    assert split_keys([], 0.5) == []
