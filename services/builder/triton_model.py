"""Triton python-backend model (decoupled): streams greedy answers from the kefu ONNX engine.

Copied by the builder into each version folder as ``model.py``; the decoding itself is ``services.builder.engine``,
the same code the quality gate ran. Requests of one execute() (dynamic batching) decode together in one batch.
"""

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        # The stub runs Python isolated: PYTHONPATH is ignored, so the kefu source root comes from the config.
        source_root = params.get("kefu_source_root")
        if source_root and source_root not in sys.path:
            sys.path.insert(0, source_root)
        from transformers import AutoTokenizer

        from services.builder import engine

        self._engine_module = engine
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.meta = json.loads((version_dir / engine.ENGINE_META).read_text(encoding="utf-8"))
        self.engine = engine.Engine.from_dir(version_dir, threads=int(params.get("ort_threads", "0")))
        self.tokenizer = AutoTokenizer.from_pretrained(version_dir)
        self.default_max_tokens = int(self.meta["max_new_tokens"])

    def _max_tokens(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, "max_tokens")
        if tensor is None:
            return self.default_max_tokens
        requested = int(tensor.as_numpy().reshape(-1)[0])
        # The engine itself stops where positions run out, so a larger request is safe.
        return self.default_max_tokens if requested <= 0 else requested

    def execute(self, requests):
        senders, questions, limits = [], [], []
        for request in requests:
            sender = request.get_response_sender()
            tensor = pb_utils.get_input_tensor_by_name(request, "question")
            raw = tensor.as_numpy().reshape(-1) if tensor is not None else np.array([], dtype=np.object_)
            question = raw[0].decode("utf-8", "replace") if raw.size and isinstance(raw[0], bytes) else ""
            if not question.strip():
                error = pb_utils.TritonError("input 'question' is missing or empty")
                sender.send(
                    pb_utils.InferenceResponse(error=error), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                )
                continue
            senders.append(sender)
            questions.append(question)
            limits.append(self._max_tokens(request))
        if not questions:
            return None
        try:
            for reply in self._engine_module.answer_stream(
                self.engine, self.tokenizer, questions, limits, lambda i: senders[i].is_cancelled()
            ):
                # [1, 1]: batch dim first, as max_batch_size > 0 in config.pbtxt requires.
                outputs = [
                    pb_utils.Tensor("delta", np.array([[reply.delta.encode("utf-8")]], dtype=np.object_)),
                    pb_utils.Tensor("token_count", np.array([[reply.token_count]], dtype=np.int32)),
                    pb_utils.Tensor("prompt_tokens", np.array([[reply.prompt_tokens]], dtype=np.int32)),
                    pb_utils.Tensor(
                        "finish_reason", np.array([[(reply.finish_reason or "").encode()]], dtype=np.object_)
                    ),
                ]
                final = reply.finish_reason is not None
                flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
                if reply.finish_reason == "cancelled":
                    # The client has gone; only close the stream so Triton can release the request.
                    senders[reply.index].send(flags=flags)
                    pb_utils.Logger.log_info(f"kefu: request cancelled after {reply.token_count} tokens")
                else:
                    senders[reply.index].send(pb_utils.InferenceResponse(output_tensors=outputs), flags=flags)
        except Exception as exc:  # noqa: BLE001 - any failure must reach the clients as an error response
            message = f"kefu engine failed: {type(exc).__name__}: {exc}"
            for sender in senders:
                # A stream that already finished refuses further sends; the others still get the error.
                with contextlib.suppress(Exception):
                    sender.send(
                        pb_utils.InferenceResponse(error=pb_utils.TritonError(message)),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                    )
        return None

    def finalize(self):
        self.engine = None
