"""Per-request sampling in the continuous batch: each row its own temperature, nucleus and seeded generator."""

from __future__ import annotations

import numpy as np
import pytest

from services.builder.scheduler import Sampling, choose_for

LOGITS = np.array([[0.0, 2.0, 1.9, -1.0, 1.8], [5.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)


def draws(sampling: Sampling, n: int = 50) -> list[int]:
    return [sampling.pick(LOGITS[0]) for _ in range(n)]


def test_greedy_is_the_default_and_needs_no_choose() -> None:
    assert Sampling.of(None, None, 1) is None and Sampling.of(0.0, 0.5, 1) is None
    assert choose_for([None, None]) is None  # the engine takes its argmax path, untouched


def test_same_seed_same_tokens_other_seed_other_tokens() -> None:
    assert draws(Sampling(1.0, seed=7)) == draws(Sampling(1.0, seed=7))
    assert draws(Sampling(1.0, seed=7)) != draws(Sampling(1.0, seed=8))
    assert draws(Sampling(1.0, seed=-3)) == draws(Sampling(1.0, seed=-3))  # any integer is a seed


def test_top_p_keeps_the_nucleus_and_low_temperature_tends_to_greedy() -> None:
    assert set(draws(Sampling(1.0, top_p=1e-6, seed=1))) == {1}  # only the most likely token
    assert set(draws(Sampling(1.0, top_p=0.5, seed=1), 200)) <= {1, 2}
    assert set(draws(Sampling(1.0, seed=1), 400)) >= {1, 2, 4}
    assert set(draws(Sampling(0.01, seed=1))) == {1}


def test_each_row_is_chosen_with_its_own_sampling() -> None:
    choose = choose_for([Sampling(1.0, top_p=1e-6, seed=0), None])
    assert choose is not None and choose(LOGITS).tolist() == [1, 0]
    sampled = choose_for([None, Sampling(50.0, seed=0)])
    assert sampled is not None
    picks = {int(sampled(LOGITS)[1]) for _ in range(100)}
    assert len(picks) > 1 and {int(sampled(LOGITS)[0]) for _ in range(10)} == {1}  # the greedy row stays greedy


@pytest.mark.parametrize(("temperature", "top_p"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, 1.5)])
def test_bad_values_fail_the_request(temperature: float, top_p: float) -> None:
    with pytest.raises(ValueError, match="sampling needs"):
        Sampling(temperature, top_p)
