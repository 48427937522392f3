"""The continuous-batching scheduler on the session's real ONNX engine, stepped by hand (no threads, no Triton)."""

from __future__ import annotations

import pytest

from services.builder.engine import Engine, Reply, encode_question
from services.builder.repository import DEFAULT_MODEL_NAME
from services.builder.scheduler import CANCEL_CHECK_EVERY, Scheduler
from tests.integration.conftest import FAQ, Built

QUESTIONS = [q for q, _ in FAQ]


@pytest.fixture(scope="module")
def engine(built: Built) -> Engine:
    return Engine.from_dir(built.repo / DEFAULT_MODEL_NAME / "1")


@pytest.fixture(scope="module")
def tokenizer(built: Built):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(built.repo / DEFAULT_MODEL_NAME / "1")


class Collect:
    def __init__(self) -> None:
        self.got: dict[object, list[Reply | Exception]] = {}

    def __call__(self, handle: object, reply: Reply | Exception) -> None:
        self.got.setdefault(handle, []).append(reply)

    def text(self, handle: object) -> str:
        return "".join(r.delta for r in self.got[handle] if isinstance(r, Reply))

    def last(self, handle: object) -> Reply | Exception:
        return self.got[handle][-1]


def drain(scheduler: Scheduler) -> None:
    while scheduler.active or not scheduler.waiting.empty():
        scheduler.step()


def test_requests_joining_mid_decode_get_exactly_their_own_greedy_answer(engine: Engine, tokenizer) -> None:
    expected = engine.greedy([encode_question(tokenizer, q) for q in QUESTIONS], 12)
    out = Collect()
    scheduler = Scheduler(engine, tokenizer, out)
    for i, question in enumerate(QUESTIONS):
        scheduler.submit(i, question, 12)
        scheduler.step()  # the earlier ones are mid-decode when the next one arrives
        assert len(scheduler.active) == i + 1  # nobody has finished 12 tokens yet
    drain(scheduler)
    for i, ids in enumerate(expected):
        assert out.text(i) == tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert (out.last(i).finish_reason, out.last(i).token_count) == ("length", 12)
    assert scheduler.state is None and not scheduler.active


def test_text_goes_out_at_most_every_interval_first_and_last_at_once(engine: Engine, tokenizer) -> None:
    expected = engine.greedy([encode_question(tokenizer, QUESTIONS[0])], 16)[0]
    full = tokenizer.decode(expected, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    every, held = Collect(), Collect()
    for out, interval_ms in ((every, 0.0), (held, 60_000.0)):
        scheduler = Scheduler(engine, tokenizer, out, stream_interval_ms=interval_ms)
        scheduler.submit("q", QUESTIONS[0], 16)
        drain(scheduler)
        assert out.text("q") == full and out.last("q").token_count == 16
    assert len(every.got["q"]) > 8  # no interval: (almost) every token is its own message
    assert len(held.got["q"]) == 2  # the first text at once, the rest with the end


def test_the_interval_grows_with_the_rows_under_load(engine: Engine, tokenizer) -> None:
    scheduler = Scheduler(engine, tokenizer, Collect(), stream_interval_ms=4.0, streams_per_message=2)
    for i in range(8):
        scheduler.submit(i, QUESTIONS[i], 16)
    scheduler.step()
    assert scheduler.interval_s == pytest.approx(4 * 0.004)  # 8 rows, 2 per message
    drain(scheduler)
    scheduler.submit("alone", QUESTIONS[0], 4)
    scheduler.step()
    assert scheduler.interval_s == pytest.approx(0.004)


def test_max_active_caps_the_batch_and_the_rest_wait(engine: Engine, tokenizer) -> None:
    out = Collect()
    scheduler = Scheduler(engine, tokenizer, out, max_active=2)
    for i in range(5):
        scheduler.submit(i, QUESTIONS[i], 4)
    scheduler.step()
    assert len(scheduler.active) == 2
    drain(scheduler)
    assert all(out.last(i).finish_reason == "length" for i in range(5))


def test_cancelled_and_zero_budget_requests_end_early(engine: Engine, tokenizer) -> None:
    out = Collect()
    cancelled: set[object] = set()
    scheduler = Scheduler(engine, tokenizer, out, is_cancelled=lambda h: h in cancelled)
    scheduler.submit("keep", QUESTIONS[0], 32)
    scheduler.submit("drop", QUESTIONS[1], 32)
    scheduler.submit("none", QUESTIONS[2], 0)
    scheduler.step()
    cancelled.add("drop")
    drain(scheduler)
    # Cancellation is an IPC question to Triton, asked every CANCEL_CHECK_EVERY tokens.
    assert out.last("drop").finish_reason == "cancelled" and out.last("drop").token_count == CANCEL_CHECK_EVERY
    assert (out.last("none").finish_reason, out.last("none").token_count) == ("length", 0)
    assert out.last("keep").token_count == 32


def test_a_failing_step_fails_the_running_requests_and_the_next_one_is_served(
    engine: Engine, tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Collect()
    scheduler = Scheduler(engine, tokenizer, out)
    scheduler.submit("a", QUESTIONS[0], 8)
    scheduler.submit("b", QUESTIONS[1], 8)
    scheduler.step()
    with monkeypatch.context() as patched:
        patched.setattr(engine, "step", lambda state: (_ for _ in ()).throw(RuntimeError("ORT fell over")))
        scheduler.step()
    assert isinstance(out.last("a"), RuntimeError) and isinstance(out.last("b"), RuntimeError)
    assert not scheduler.active and scheduler.state is None
    scheduler.submit("c", QUESTIONS[2], 3)
    drain(scheduler)
    assert (out.last("c").finish_reason, out.last("c").token_count) == ("length", 3)


def test_stop_fails_what_is_still_running(engine: Engine, tokenizer) -> None:
    out = Collect()
    scheduler = Scheduler(engine, tokenizer, out)
    scheduler.submit("a", QUESTIONS[0], 50)
    scheduler.step()
    scheduler.stop()
    scheduler.run()  # returns: stop was queued
    assert isinstance(out.last("a"), RuntimeError)


def test_logprobs_only_for_the_rows_that_asked_and_greedy_is_top_1(engine: Engine, tokenizer) -> None:
    expected = engine.greedy([encode_question(tokenizer, q) for q in QUESTIONS[:3]], 10)
    out = Collect()
    scheduler = Scheduler(engine, tokenizer, out)
    for i, question in enumerate(QUESTIONS[:3]):
        scheduler.submit(i, question, 10, top_logprobs=(None, 0, 4)[i])
        scheduler.step()  # rows join a batch that is already decoding
    drain(scheduler)
    for i, ids in enumerate(expected):
        replies = [r for r in out.got[i] if isinstance(r, Reply)]
        assert out.text(i) == tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if i == 0:
            assert all(r.logprobs is None for r in replies)  # not asked: nothing computed or sent
            continue
        tokens = [t for r in replies for t in r.logprobs]
        assert [t.token_id for t in tokens] == ids and all(t.logprob <= 0 for t in tokens)
        assert all(len(t.top) == (0, 0, 4)[i] for t in tokens)
        if i == 2:
            assert all(t.top[0] == (t.token_id, t.logprob) for t in tokens)
