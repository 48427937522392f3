"""Chat through the gateway against the real stack: OpenAI SDK over HTTP (whole and streamed) and gRPC, compared
with the same question streamed straight from Triton (greedy, so the text must be identical)."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

import grpc
import httpx
import pytest
import tritonclient.grpc.aio as aioclient
from openai import AsyncOpenAI

from libs.common.triton_stream import stream_answer
from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc
from tests.integration.conftest import FAQ, MAX_NEW_TOKENS, Triton

from .conftest import MODEL, RunningGateway, answer_row

pytestmark = pytest.mark.slow


async def direct(client: aioclient.InferenceServerClient, question: str, max_tokens: int | None = None) -> str:
    return "".join([d.text async for d in stream_answer(client, MODEL, question, max_tokens=max_tokens)])


def openai_client(gw: RunningGateway, role: str = "app") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gw.http, api_key=gw.keys[role], max_retries=0)


async def test_openai_sdk_whole_answer_equals_triton(gateway: RunningGateway, triton_client) -> None:
    question = FAQ[0][0]
    expected = await direct(triton_client, question)
    async with openai_client(gateway) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": question}],
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == expected
    assert completion.choices[0].finish_reason == "length"
    assert raw.headers["x-kefu-answer-id"] == completion.id
    assert completion.usage.completion_tokens == MAX_NEW_TOKENS
    row = await answer_row(gateway, completion.id)
    assert (row.question, row.answer, row.status) == (question, expected, "ok")
    assert row.prompt_tokens == completion.usage.prompt_tokens > 0
    assert row.completion_tokens == MAX_NEW_TOKENS and row.ttft_ms > 0 and row.latency_ms >= row.ttft_ms
    assert row.engine_id == completion.system_fingerprint and row.model_id and row.dataset_id


async def test_openai_sdk_stream_equals_triton(gateway: RunningGateway, triton_client) -> None:
    question = FAQ[1][0]
    expected = await direct(triton_client, question)
    async with openai_client(gateway) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": question}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert len({c.id for c in chunks}) == 1 and len([c for c in chunks if c.choices]) > 2
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == MAX_NEW_TOKENS
    row = await answer_row(gateway, chunks[0].id)
    assert row.answer == expected and row.status == "ok"


async def test_max_tokens_is_passed_to_triton(gateway: RunningGateway, triton_client) -> None:
    async with openai_client(gateway) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": FAQ[2][0]}], max_tokens=5
        )
    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].message.content == await direct(triton_client, FAQ[2][0], 5)


async def test_grpc_unary_and_stream_equal_triton(gateway: RunningGateway, triton_client) -> None:
    question = FAQ[3][0]
    expected = await direct(triton_client, question)
    metadata = (("authorization", f"Bearer {gateway.keys['app']}"),)
    async with grpc.aio.insecure_channel(gateway.grpc) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        reply = await stub.Chat(chat_pb2.ChatRequest(question=question), metadata=metadata)
        call = stub.ChatStream(chat_pb2.ChatRequest(question=question), metadata=metadata)
        initial = dict(await call.initial_metadata())
        messages = [m async for m in call]
    assert reply.answer == expected and reply.finish_reason == "length" and reply.answer_id
    assert reply.usage.completion_tokens == MAX_NEW_TOKENS and reply.model == MODEL
    assert "".join(m.delta for m in messages) == expected
    assert {m.answer_id for m in messages} == {initial["x-kefu-answer-id"]} and len(messages) > 2
    assert messages[-1].finish_reason == "length" and messages[-1].usage.total_tokens > MAX_NEW_TOKENS
    assert (await answer_row(gateway, reply.answer_id)).answer == expected


async def cancellations(triton: Triton) -> int:
    return triton.log.read_text(errors="replace").count("kefu: request cancelled")


async def test_client_disconnect_cancels_the_triton_request(gateway: RunningGateway, triton: Triton) -> None:
    before = await cancellations(triton)
    metadata = (("authorization", f"Bearer {gateway.keys['app']}"),)
    async with grpc.aio.insecure_channel(gateway.grpc) as channel:
        call = chat_pb2_grpc.ChatServiceStub(channel).ChatStream(
            chat_pb2.ChatRequest(question=FAQ[4][0], max_tokens=400), metadata=metadata
        )
        answer_id = (await call.read()).answer_id
        await call.read()
        call.cancel()
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"model": MODEL, "messages": [{"role": "user", "content": FAQ[5][0]}], "stream": True, "max_tokens": 400}
        async with client.stream(
            "POST", f"{gateway.http}/chat/completions", json=body, headers=gateway.auth("app")
        ) as r:
            http_answer_id = r.headers["x-kefu-answer-id"]
            async for _line in r.aiter_lines():
                break
    for _ in range(100):
        if await cancellations(triton) >= before + 2:
            break
        await asyncio.sleep(0.1)
    assert await cancellations(triton) >= before + 2, "Triton never saw both cancellations"
    for aid in (answer_id, http_answer_id):
        row = await answer_row(gateway, aid)
        assert row.status == "cancelled" and row.completion_tokens < 400


async def test_metrics_and_length_stats(gateway: RunningGateway) -> None:
    # One answer per API this test reads the counters of, so it does not depend on which tests ran before it.
    async with openai_client(gateway) as client:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": FAQ[6][0]}])
    async with grpc.aio.insecure_channel(gateway.grpc) as channel:
        call = chat_pb2_grpc.ChatServiceStub(channel).ChatStream(
            chat_pb2.ChatRequest(question=FAQ[6][0]), metadata=(("authorization", f"Bearer {gateway.keys['app']}"),)
        )
        assert [m async for m in call]
    async with httpx.AsyncClient() as client:
        text = (await client.get(gateway.http.removesuffix("/v1") + "/metrics")).text
        stats = await client.get(f"{gateway.http}/stats/lengths", headers=gateway.auth("admin"))
        denied = await client.get(f"{gateway.http}/stats/lengths", headers=gateway.auth("app"))
    for name in (
        "kefu_gateway_ttft_seconds_bucket",
        "kefu_gateway_time_per_output_token_seconds_bucket",
        "kefu_gateway_tokens_per_second_bucket",
        "kefu_gateway_completion_tokens_total",
        "kefu_gateway_prompt_tokens_bucket",
        'kefu_gateway_requests_total{api="http",code="200",stream="false"}',
        'kefu_gateway_requests_total{api="grpc",code="OK",stream="true"}',
    ):
        assert name in text, name
    assert denied.status_code == 403
    body = stats.json()
    assert body["answers"] >= 1 and body["completion_tokens"]["max"] >= 1
    assert body["sequence_tokens"]["p99"] >= body["prompt_tokens"]["p50"]
    assert body["suggested_max_length"] % 64 == 0


async def test_ttft_and_throughput_gateway_vs_direct(gateway: RunningGateway, triton_client) -> None:
    """Not a benchmark (2 shared cores), but the gateway's overhead on TTFT must stay small."""
    question = FAQ[7][0]

    async def timed(first_token) -> tuple[float, float]:
        t0 = time.perf_counter()
        ttft, tokens = None, 0
        async for _ in first_token():
            ttft = ttft or time.perf_counter() - t0
            tokens += 1
        return ttft, time.perf_counter() - t0

    def via_triton():
        return stream_answer(triton_client, MODEL, question)

    metadata = (("authorization", f"Bearer {gateway.keys['admin']}"),)
    async with grpc.aio.insecure_channel(gateway.grpc) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        def via_gateway():
            return stub.ChatStream(chat_pb2.ChatRequest(question=question), metadata=metadata)

        await timed(via_gateway)  # warm the channel
        direct_runs = [await timed(via_triton) for _ in range(10)]
        gateway_runs = [await timed(via_gateway) for _ in range(10)]
    d_ttft = statistics.median(r[0] for r in direct_runs) * 1000
    g_ttft = statistics.median(r[0] for r in gateway_runs) * 1000
    d_tps = MAX_NEW_TOKENS / statistics.median(r[1] for r in direct_runs)
    g_tps = MAX_NEW_TOKENS / statistics.median(r[1] for r in gateway_runs)
    print(f"TTFT p50 direct {d_ttft:.1f} ms, gateway {g_ttft:.1f} ms; tokens/s direct {d_tps:.0f}, gateway {g_tps:.0f}")
    assert g_ttft < d_ttft + 50


async def kefu(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the kefu CLI without blocking this event loop (the gateway under test runs in it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kefu", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode, out.decode(), err.decode()


async def test_kefu_keys_create_and_kefu_chat(gateway: RunningGateway) -> None:
    env = {
        **os.environ,
        "KEFU_DATABASE_URL": gateway.settings.database_url,
        "KEFU_HOME": str(gateway.settings.home),
        "KEFU_GATEWAY_GRPC_PORT": str(gateway.settings.gateway_grpc_port),
    }
    code, out, err = await kefu("keys", "create", "--role", "app", "--name", "cli", env=env)
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    assert key.startswith("kefu_")
    code, out, err = await kefu("chat", FAQ[0][0], "--key", key, env=env)
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("answer_id: ")
    assert (await answer_row(gateway, last.split()[-1])).status == "ok"
    code, out, err = await kefu("chat", "hi", "--key", "kefu_nope", env=env)
    assert code == 1 and "UNAUTHENTICATED" in err
