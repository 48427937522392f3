"""Timed streams over the three paths the benchmarks compare: Triton direct, gateway gRPC, gateway OpenAI SSE."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass

import grpc
import httpx
import tritonclient.grpc.aio as aioclient

from libs.common.triton_stream import stream_answer
from proto.kefu.gateway.v1 import chat_pb2, chat_pb2_grpc


@dataclass(frozen=True)
class Timed:
    tokens: int
    ttft_s: float  # request sent → first delta received
    total_s: float


async def triton_stream(client: aioclient.InferenceServerClient, model: str, question: str, max_tokens: int) -> Timed:
    t0 = time.perf_counter()
    first, tokens = None, 0
    async for delta in stream_answer(client, model, question, max_tokens=max_tokens):
        first = first or time.perf_counter()
        tokens = delta.token_count
    end = time.perf_counter()
    return Timed(tokens, (first or end) - t0, end - t0)


async def gateway_grpc(stub: chat_pb2_grpc.ChatServiceStub, key: str, question: str, max_tokens: int) -> Timed:
    t0 = time.perf_counter()
    first, tokens = None, 0
    call = stub.ChatStream(
        chat_pb2.ChatRequest(question=question, max_tokens=max_tokens), metadata=(("authorization", f"Bearer {key}"),)
    )
    async for message in call:
        first = first or time.perf_counter()
        if message.finish_reason:
            tokens = message.usage.completion_tokens
    end = time.perf_counter()
    return Timed(tokens, (first or end) - t0, end - t0)


async def gateway_sse(client: httpx.AsyncClient, base: str, key: str, question: str, max_tokens: int) -> Timed:
    body = {
        "model": "kefu-chat",
        "messages": [{"role": "user", "content": question}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
    }
    t0 = time.perf_counter()
    first, tokens = None, 0
    async with client.stream(
        "POST", f"{base}/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            first = first or time.perf_counter()
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    return Timed(tokens, (first or end) - t0, end - t0)


def tok_per_s(runs: list[Timed]) -> float:
    return sum(r.tokens for r in runs) / sum(r.total_s for r in runs)


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def p99_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


def grpc_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target)
