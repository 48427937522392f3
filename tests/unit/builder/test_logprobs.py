"""Log-probabilities from the logits a token was chosen from: right values, top-k order, zero cost when not asked."""

from __future__ import annotations

import numpy as np
import pytest

from services.builder.logprobs import TokenText, log_softmax, recording, token_logprob
from services.builder.scheduler import Sampling, choose_for

LOGITS = np.array([[0.0, 2.0, 1.9, -1.0, 1.8], [5.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)


def test_log_softmax_is_a_distribution_and_top_k_is_best_first() -> None:
    lp = log_softmax(LOGITS[0])
    assert np.isclose(np.exp(lp).sum(), 1.0) and (lp <= 0).all()
    got = token_logprob(LOGITS[0], 2, 3)
    assert got.token_id == 2 and got.logprob == pytest.approx(lp[2])
    assert [i for i, _ in got.top] == [1, 2, 4]
    assert [v for _, v in got.top] == pytest.approx([lp[1], lp[2], lp[4]])
    assert token_logprob(LOGITS[0], 1, 0).top == ()
    assert len(token_logprob(LOGITS[0], 1, 99).top) == 5  # never more than the vocabulary


def test_nobody_asking_keeps_the_plain_engine_path() -> None:
    assert recording(None, [None, None], lambda *_: None) is None
    sampled = choose_for([Sampling(1.0, seed=1), None])
    assert recording(sampled, [None, None], lambda *_: None) is sampled


def test_only_asking_rows_are_recorded_with_the_chosen_token() -> None:
    got: dict[int, object] = {}
    choose = recording(None, [None, 2], got.__setitem__)
    assert choose is not None and choose(LOGITS).tolist() == [1, 0]  # greedy choice unchanged
    assert list(got) == [1] and got[1].token_id == 0 and got[1].top[0][0] == 0
    # A sampled row records the token it drew, under the model's own (untempered) distribution.
    got.clear()
    sampled = recording(choose_for([Sampling(50.0, seed=3), None]), [0, None], got.__setitem__)
    ids = sampled(LOGITS)
    assert got[0].token_id == int(ids[0]) and got[0].logprob == pytest.approx(log_softmax(LOGITS[0])[ids[0]])


def test_token_text_gives_real_bytes_of_partial_characters(base_dir) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    text = TokenText(tokenizer)
    ids = tokenizer("发票怎么开？ ok", add_special_tokens=False)["input_ids"]
    raw = b"".join(bytes(text(i)[1]) for i in ids)
    assert raw == "发票怎么开？ ok".encode()  # the tokens' bytes add up to the text, whatever the split
    for i in ids:
        token, b = text(i)
        assert token == bytes(b).decode("utf-8", "backslashreplace")
