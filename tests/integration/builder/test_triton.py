"""The real tritonserver serves a built engine: streamed answers over gRPC equal the trained model's greedy answers."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from services.builder.engine import encode_question
from services.builder.export import Checkpoint
from services.builder.gate import torch_greedy
from tests.integration.conftest import FAQ, MAX_NEW_TOKENS, Triton

pytestmark = pytest.mark.slow
MODEL = "kefu-chat"


def request(question: str, max_tokens: int | None = None) -> dict:
    # Batch dim first: the model has max_batch_size > 0 so Triton can group concurrent requests.
    inputs = [grpcclient.InferInput("question", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[question.encode("utf-8")]], dtype=np.object_))
    if max_tokens is not None:
        inputs.append(grpcclient.InferInput("max_tokens", [1, 1], "INT32"))
        inputs[1].set_data_from_numpy(np.array([[max_tokens]], dtype=np.int32))
    return {"model_name": MODEL, "inputs": inputs}


async def stream(client: aioclient.InferenceServerClient, question: str, max_tokens: int | None = None) -> list[dict]:
    """Every response of one request until its final one (the one with a finish_reason)."""

    async def one():
        yield request(question, max_tokens)

    responses = []
    async for result, error in client.stream_infer(one()):
        if error is not None:
            raise error
        responses.append(
            {
                "delta": result.as_numpy("delta")[0, 0].decode("utf-8"),
                "token_count": int(result.as_numpy("token_count")[0, 0]),
                "prompt_tokens": int(result.as_numpy("prompt_tokens")[0, 0]),
                "finish_reason": result.as_numpy("finish_reason")[0, 0].decode(),
            }
        )
        if responses[-1]["finish_reason"]:
            break
    return responses


@pytest.fixture(scope="module")
async def client(triton: Triton) -> aioclient.InferenceServerClient:
    client = aioclient.InferenceServerClient(triton.grpc_url)
    started = time.perf_counter()
    await client.load_model(MODEL)
    print(f"Triton load_model: {time.perf_counter() - started:.2f}s")
    assert await client.is_model_ready(MODEL, "1")
    yield client
    await client.close()


async def test_streamed_answer_equals_torch_greedy(client: aioclient.InferenceServerClient, checkpoint: Checkpoint):
    question = FAQ[0][0]
    started = time.perf_counter()
    responses = await stream(client, question)
    elapsed = time.perf_counter() - started
    ids = encode_question(checkpoint.tokenizer, question)
    (expected,) = torch_greedy(checkpoint, [ids], MAX_NEW_TOKENS)
    print(f"stream: {len(expected)} tokens in {elapsed:.3f}s = {len(expected) / elapsed:.0f} tok/s")
    assert "".join(r["delta"] for r in responses) == checkpoint.tokenizer.decode(expected, skip_special_tokens=True)
    final = responses[-1]
    assert (final["finish_reason"], final["token_count"]) == ("length", MAX_NEW_TOKENS)
    assert final["prompt_tokens"] == len(ids)
    assert len(responses) > 1 and all(not r["finish_reason"] for r in responses[:-1])


async def test_max_tokens_input(client: aioclient.InferenceServerClient):
    responses = await stream(client, FAQ[1][0], max_tokens=5)
    assert responses[-1]["token_count"] == 5 and responses[-1]["finish_reason"] == "length"


async def test_concurrent_streams_both_complete(client: aioclient.InferenceServerClient, checkpoint: Checkpoint):
    questions = [FAQ[2][0], FAQ[3][0]]
    results = await asyncio.gather(*(stream(client, q) for q in questions))
    prompts = [encode_question(checkpoint.tokenizer, q) for q in questions]
    for responses, expected in zip(results, torch_greedy(checkpoint, prompts, MAX_NEW_TOKENS), strict=True):
        assert responses[-1]["finish_reason"] == "length"
        assert "".join(r["delta"] for r in responses) == checkpoint.tokenizer.decode(expected, skip_special_tokens=True)


async def test_cancellation_ends_the_stream_early(client: aioclient.InferenceServerClient, triton: Triton):
    async def one():
        yield request(FAQ[4][0], max_tokens=400)

    responses = client.stream_infer(one())
    received = 0
    async for _result, error in responses:
        assert error is None
        received += 1
        if received == 2:
            responses.cancel()
            break
    # The model logs how far a cancelled request got; well short of the 400 tokens asked for.
    for _ in range(50):
        lines = [ln for ln in triton.log.read_text(errors="replace").splitlines() if "kefu: request cancelled" in ln]
        if lines:
            break
        await asyncio.sleep(0.1)
    assert lines, "the model never saw the cancellation"
    assert int(lines[-1].split("after ")[1].split()[0]) < 400


async def test_empty_question_is_an_error(client: aioclient.InferenceServerClient):
    with pytest.raises(Exception, match="question"):
        await stream(client, "   ")


async def test_late_joiners_decode_alongside_running_streams(
    client: aioclient.InferenceServerClient, checkpoint: Checkpoint
):
    """Continuous batching: streams start while others run, with different budgets; each equals its own greedy."""
    questions = [q for q, _ in FAQ][:6]
    budgets = [MAX_NEW_TOKENS, 3, MAX_NEW_TOKENS, 7, 1, MAX_NEW_TOKENS]

    async def late(i: int) -> list[dict]:
        await asyncio.sleep(0.02 * i)
        return await stream(client, questions[i], budgets[i])

    results = await asyncio.gather(*(late(i) for i in range(len(questions))))
    for i, responses in enumerate(results):
        (expected,) = torch_greedy(checkpoint, [encode_question(checkpoint.tokenizer, questions[i])], budgets[i])
        assert "".join(r["delta"] for r in responses) == checkpoint.tokenizer.decode(expected, skip_special_tokens=True)
        assert (responses[-1]["finish_reason"], responses[-1]["token_count"]) == ("length", budgets[i])
