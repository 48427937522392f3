"""Stream one answer from the decoupled Triton chat model as an async generator of text deltas.

The model contract (written by the builder): input ``question`` BYTES [1,1], optional ``context`` BYTES [1,1] (the
retrieved references, ``libs.common.prompting.grounded_context``), optional ``max_tokens`` INT32 [1,1], optional
``temperature`` / ``top_p`` FP32 [1,1] and ``seed`` INT64 [1,1] (sampling; absent: greedy), optional ``logprobs``
INT32 [1,1] (log-probabilities with this many alternatives per token; absent: none);
each response carries ``delta`` BYTES, ``token_count`` INT32, ``prompt_tokens`` INT32 and ``finish_reason`` BYTES
(empty until the final response: ``stop`` | ``length`` | ``cancelled``), and when asked ``logprobs`` BYTES (JSON,
OpenAI's ``logprobs.content`` items of the tokens behind that response's text). Shared by the builder's smoke test, the
gateway and the benchmarks. Closing the generator early cancels the request inside Triton.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient


@dataclass(frozen=True)
class Delta:
    text: str
    token_count: int
    prompt_tokens: int
    finish_reason: str  # "" until the last delta
    #: OpenAI ``logprobs.content`` items of this delta's tokens; None when the request did not ask for them.
    logprobs: list[dict] | None = None


@dataclass(frozen=True)
class Sampling:
    """Per-request sampling; only sent when asked for, so engines built before these inputs existed still serve
    greedy requests."""

    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


def _scalar(name: str, value: float | int, datatype: str, dtype: type) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1, 1], datatype)
    tensor.set_data_from_numpy(np.array([[value]], dtype=dtype))
    return tensor


def chat_request(
    model: str,
    question: str,
    *,
    max_tokens: int | None = None,
    version: str = "",
    context: str = "",
    sampling: Sampling | None = None,
    logprobs: int | None = None,
) -> dict:
    inputs = [grpcclient.InferInput("question", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[question.encode("utf-8")]], dtype=np.object_))
    if context:
        inputs.append(grpcclient.InferInput("context", [1, 1], "BYTES"))
        inputs[-1].set_data_from_numpy(np.array([[context.encode("utf-8")]], dtype=np.object_))
    if max_tokens is not None:
        inputs.append(_scalar("max_tokens", max_tokens, "INT32", np.int32))
    if sampling is not None and sampling.temperature:  # temperature 0 / unset is greedy: nothing to send
        inputs.append(_scalar("temperature", sampling.temperature, "FP32", np.float32))
        if sampling.top_p is not None:
            inputs.append(_scalar("top_p", sampling.top_p, "FP32", np.float32))
        if sampling.seed is not None:
            inputs.append(_scalar("seed", sampling.seed, "INT64", np.int64))
    if logprobs is not None:  # only when asked: engines built before this input existed serve everything else
        inputs.append(_scalar("logprobs", logprobs, "INT32", np.int32))
    return {"model_name": model, "model_version": version, "inputs": inputs}


async def stream_answer(
    client: aioclient.InferenceServerClient,
    model: str,
    question: str,
    *,
    max_tokens: int | None = None,
    version: str = "",
    context: str = "",
    sampling: Sampling | None = None,
    logprobs: int | None = None,
) -> AsyncIterator[Delta]:
    """``logprobs``: None for none, else the number of alternatives per token (0 … 20)."""

    async def requests() -> AsyncIterator[dict]:
        yield chat_request(
            model, question, max_tokens=max_tokens, version=version, context=context, sampling=sampling,
            logprobs=logprobs,
        )  # fmt: skip

    responses = client.stream_infer(requests())
    try:
        async for result, error in responses:
            if error is not None:
                raise error
            delta = Delta(
                text=result.as_numpy("delta")[0, 0].decode("utf-8"),
                token_count=int(result.as_numpy("token_count")[0, 0]),
                prompt_tokens=int(result.as_numpy("prompt_tokens")[0, 0]),
                finish_reason=result.as_numpy("finish_reason")[0, 0].decode(),
                logprobs=None if logprobs is None else _logprobs(result),
            )
            yield delta
            if delta.finish_reason:
                return
    finally:
        responses.cancel()  # a no-op after the final response; cancels the request inside Triton otherwise


def _logprobs(result) -> list[dict]:  # type: ignore[no-untyped-def]
    raw = result.as_numpy("logprobs")
    return json.loads(raw[0, 0]) if raw is not None and raw.size else []
