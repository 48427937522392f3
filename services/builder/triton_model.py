"""Triton python-backend model (decoupled): streams answers from the kefu ONNX engine, greedy unless a request
sends the optional ``temperature`` (> 0), ``top_p`` and ``seed`` inputs. A request that sends ``logprobs`` (the
number of alternatives per token, 0 … 20) gets a ``logprobs`` output on each response: JSON, OpenAI's
``logprobs.content`` items of the tokens behind that response's text (``services.builder.logprobs``); others get
no such output and cost nothing more.

Copied by the builder into each version folder as ``model.py``; the decoding is ``services.builder.engine``, the
same code the quality gate ran. ``execute`` only queues requests and returns: a decode thread runs continuous
batching (``services.builder.scheduler``, which also decides how often a stream's text goes out) over every live
request, and a send thread answers the clients. When the clients are slower than decoding, the send thread merges
a request's queued deltas into one response, so a busy server sends fewer, larger messages instead of falling
behind.
"""

import json
import queue
import sys
import threading
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        # The stub runs Python isolated: PYTHONPATH is ignored, so the kefu source root comes from the config.
        source_root = params.get("kefu_source_root")
        if source_root and source_root not in sys.path:
            sys.path.insert(0, source_root)
        from transformers import AutoTokenizer

        from services.builder import engine, logprobs, scheduler

        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.meta = json.loads((version_dir / engine.ENGINE_META).read_text(encoding="utf-8"))
        self.default_max_tokens = int(self.meta["max_new_tokens"])
        self.sampling = scheduler.Sampling.of
        self.token_text = None  # built on the first request that asks for log-probabilities
        self.logprobs_text = logprobs.TokenText
        self.outbox = queue.SimpleQueue()
        self.scheduler = scheduler.Scheduler(
            engine.Engine.from_dir(version_dir, threads=int(params.get("ort_threads", "0"))),
            AutoTokenizer.from_pretrained(version_dir),
            lambda sender, reply: self.outbox.put((sender, reply)),
            max_active=int(params.get("max_active", "32")),
            stream_interval_ms=float(params.get("stream_interval_ms", "4")),
            streams_per_message=int(params.get("streams_per_message", "2")),
            is_cancelled=lambda sender: sender.is_cancelled(),
        )
        self.threads = [
            threading.Thread(target=self.scheduler.run, name="kefu-decode", daemon=True),
            threading.Thread(target=self._send_loop, name="kefu-send", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _max_tokens(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, "max_tokens")
        if tensor is None:
            return self.default_max_tokens
        requested = int(tensor.as_numpy().reshape(-1)[0])
        # The engine itself stops where positions run out, so a larger request is safe.
        return self.default_max_tokens if requested <= 0 else requested

    @staticmethod
    def _scalar(request, name, kind):
        """An optional [1, 1] number input, or None when the request did not send it."""
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return None
        values = tensor.as_numpy().reshape(-1)
        return kind(values[0]) if values.size else None

    def _sampling(self, request):
        """Greedy (None) unless the request asked for a temperature > 0; bad values raise, failing the request."""
        return self.sampling(
            self._scalar(request, "temperature", float), self._scalar(request, "top_p", float),
            self._scalar(request, "seed", int),
        )  # fmt: skip

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            tensor = pb_utils.get_input_tensor_by_name(request, "question")
            raw = tensor.as_numpy().reshape(-1) if tensor is not None else np.array([], dtype=np.object_)
            question = raw[0].decode("utf-8", "replace") if raw.size and isinstance(raw[0], bytes) else ""
            if not question.strip():
                error = pb_utils.TritonError("input 'question' is missing or empty")
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
                continue
            context = pb_utils.get_input_tensor_by_name(request, "context")
            refs = context.as_numpy().reshape(-1) if context is not None else np.array([], dtype=np.object_)
            context_text = refs[0].decode("utf-8", "replace") if refs.size and isinstance(refs[0], bytes) else ""
            try:
                self.scheduler.submit(
                    sender, question, self._max_tokens(request), context_text, self._sampling(request),
                    self._scalar(request, "logprobs", int),
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - a request that cannot be queued must still be answered
                self._send(sender, exc)
        return None

    def _send_loop(self):
        while True:
            batch = [self.outbox.get()]
            while not self.outbox.empty():
                batch.append(self.outbox.get())
            merged = {}  # sender id → [sender, reply]; dicts keep arrival order
            for item in batch:
                if item is None:
                    return
                sender, reply = item
                prev = merged.get(id(sender))
                if prev is not None and not isinstance(prev[1], Exception) and not isinstance(reply, Exception):
                    lps = None if reply.logprobs is None else (*(prev[1].logprobs or ()), *reply.logprobs)
                    reply = type(reply)(reply.index, prev[1].delta + reply.delta, reply.token_count,
                                        reply.prompt_tokens, reply.finish_reason, lps)  # fmt: skip
                merged[id(sender)] = [sender, reply]
            for sender, reply in merged.values():
                self._send(sender, reply)

    def _send(self, sender, reply):
        try:
            if isinstance(reply, Exception):
                message = f"kefu engine failed: {type(reply).__name__}: {reply}"
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)), flags=FINAL)
            elif reply.finish_reason == "cancelled":
                # The client has gone; only close the stream so Triton can release the request.
                sender.send(flags=FINAL)
                pb_utils.Logger.log_info(f"kefu: request cancelled after {reply.token_count} tokens")
            else:
                # [1, 1]: batch dim first, as max_batch_size > 0 in config.pbtxt requires.
                outputs = [
                    pb_utils.Tensor("delta", np.array([[reply.delta.encode("utf-8")]], dtype=np.object_)),
                    pb_utils.Tensor("token_count", np.array([[reply.token_count]], dtype=np.int32)),
                    pb_utils.Tensor("prompt_tokens", np.array([[reply.prompt_tokens]], dtype=np.int32)),
                    pb_utils.Tensor(
                        "finish_reason", np.array([[(reply.finish_reason or "").encode()]], dtype=np.object_)
                    ),
                ]
                if reply.logprobs is not None:
                    if self.token_text is None:
                        self.token_text = self.logprobs_text(self.scheduler.tokenizer)
                    raw = self.token_text.dumps(reply.logprobs)
                    outputs.append(pb_utils.Tensor("logprobs", np.array([[raw]], dtype=np.object_)))
                flags = FINAL if reply.finish_reason is not None else 0
                sender.send(pb_utils.InferenceResponse(output_tensors=outputs), flags=flags)
        except Exception as exc:  # noqa: BLE001 - a stream that already closed refuses sends; others go on
            pb_utils.Logger.log_warn(f"kefu: could not send a response: {exc}")

    def finalize(self):
        decode, send = self.threads
        self.scheduler.stop()
        decode.join(timeout=10)  # its last act fails the requests still running: send those before stopping
        self.outbox.put(None)
        send.join(timeout=10)
