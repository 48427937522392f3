"""Load a trained checkpoint dir and export it to ONNX with a KV cache (fp32), optionally quantized to INT8.

ONNX graph contract (what ``engine.py`` feeds):
  inputs  input_ids [B, S] int64, attention_mask [B, P+S] int64, position_ids [B, S] int64,
          past_keys / past_values [L, B, KV, P, D] float32 (P may be 0 for the prefill)
  outputs logits [B, V] (last position only: all greedy decoding needs),
          present_keys / present_values [L, B, KV, P+S, D]
Stacking the cache into two tensors keeps the graph's input list independent of the layer count.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch.export import Dim
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedModel

from libs.common.prompting import chat_template_sha256
from services.builder.errors import BuildError

REQUIRED_META = ("model_id", "dataset_id", "chat_template_sha256", "max_length")
# protobuf refuses single files over 2 GiB; bigger checkpoints keep their weights in a side file.
_EXTERNAL_DATA_BYTES = 1_500_000_000


@dataclass(frozen=True)
class Checkpoint:
    model: PreTrainedModel
    tokenizer: Any
    meta: dict[str, Any]
    path: Path

    @property
    def shape(self) -> dict[str, int]:
        """Cache geometry the engine needs to build empty past tensors."""
        cfg = self.model.config
        heads = cfg.num_attention_heads
        return {
            "num_layers": cfg.num_hidden_layers,
            "num_kv_heads": getattr(cfg, "num_key_value_heads", None) or heads,
            "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
            "max_positions": getattr(cfg, "max_position_embeddings", 4096),
        }

    @property
    def eos_token_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if not ids:
            raise BuildError(f"{self.path}: neither generation_config.json nor the tokenizer defines an eos token")
        return ids


def load_checkpoint(model_dir: Path) -> Checkpoint:
    """Open a trained model dir, refusing anything the engine could not serve faithfully."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise BuildError(f"model dir {model_dir} does not exist")
    meta_path = model_dir / "kefu_model.json"
    if not meta_path.is_file():
        raise BuildError(f"{model_dir} has no kefu_model.json: is this a trainer output dir?")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BuildError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise BuildError(f"{meta_path} must hold a JSON object")
    missing = [key for key in REQUIRED_META if meta.get(key) in (None, "")]
    if missing:
        raise BuildError(f"{meta_path} lacks {', '.join(missing)}")
    if not (model_dir / "config.json").is_file():
        raise BuildError(f"{model_dir} has no config.json: not a save_pretrained checkpoint")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as exc:
        raise BuildError(f"{model_dir}: tokenizer files missing or unreadable ({exc})") from exc
    if not tokenizer.chat_template:
        raise BuildError(f"{model_dir}: tokenizer has no chat template; serving must use the one trained with")
    if chat_template_sha256(tokenizer) != meta["chat_template_sha256"]:
        raise BuildError(
            f"{model_dir}: chat template hash {chat_template_sha256(tokenizer)[:12]} differs from kefu_model.json's "
            f"{str(meta['chat_template_sha256'])[:12]}: the tokenizer is not the one the model was trained with"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except Exception as exc:
        raise BuildError(f"{model_dir}: weights could not be loaded ({type(exc).__name__}: {exc})") from exc
    model.eval()
    return Checkpoint(model=model, tokenizer=tokenizer, meta=meta, path=model_dir)


class _CachedDecoder(torch.nn.Module):
    """Llama forward with the KV cache as explicit stacked inputs/outputs, the form ONNX can carry."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        self.num_layers = model.config.num_hidden_layers

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_keys: torch.Tensor,
        past_values: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cache = DynamicCache(ddp_cache_data=[(past_keys[i], past_values[i]) for i in range(self.num_layers)])
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        present = out.past_key_values
        keys = torch.stack([layer.keys for layer in present.layers])
        values = torch.stack([layer.values for layer in present.layers])
        return out.logits[:, -1, :], keys, values


def export_onnx(ckpt: Checkpoint, out_path: Path) -> Path:
    """Export the checkpoint with a KV cache so decode steps feed one token, not the whole prefix."""
    shape = ckpt.shape
    layers, kv, dim = shape["num_layers"], shape["num_kv_heads"], shape["head_dim"]
    batch, seq, past = 2, 3, 4  # example sizes > 1 so export does not specialise them
    max_pos = shape["max_positions"]
    args = (
        torch.ones(batch, seq, dtype=torch.long),
        torch.ones(batch, past + seq, dtype=torch.long),
        torch.arange(past, past + seq).expand(batch, seq).contiguous(),
        torch.zeros(layers, batch, kv, past, dim),
        torch.zeros(layers, batch, kv, past, dim),
    )
    b = Dim("batch", min=1, max=1024)
    s = Dim("seq", min=1, max=max_pos)
    p = Dim("past", min=0, max=max_pos)
    # attention_mask covers past + seq, but Dim + Dim is not expressible: it gets its own Dim.
    t = Dim("total", min=1, max=2 * max_pos)
    dynamic_shapes = {
        "input_ids": {0: b, 1: s},
        "attention_mask": {0: b, 1: t},
        "position_ids": {0: b, 1: s},
        "past_keys": {1: b, 3: p},
        "past_values": {1: b, 3: p},
    }
    n_bytes = sum(w.numel() * w.element_size() for w in ckpt.model.parameters())
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            _CachedDecoder(ckpt.model),
            args,
            str(out_path),
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=list(dynamic_shapes),
            output_names=["logits", "present_keys", "present_values"],
            external_data=n_bytes > _EXTERNAL_DATA_BYTES,
            verbose=False,
        )
    return out_path


def quantize_int8(fp32_path: Path, out_path: Path) -> Path:
    """Dynamic INT8 weights (activations stay fp32): no calibration set needed, ~3x smaller."""
    quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8)
    return out_path


def export_engine_files(ckpt: Checkpoint, version_dir: Path, precision: str) -> dict[str, Any]:
    """Write model.onnx (+ model.int8.onnx) into ``version_dir``; returns which file serves and the timings."""
    if precision not in ("fp32", "int8"):
        raise BuildError(f"CPU engine precision must be fp32 or int8, not {precision!r}")
    started = time.perf_counter()
    fp32 = export_onnx(ckpt, version_dir / "model.onnx")
    export_s = time.perf_counter() - started
    info: dict[str, Any] = {"onnx_file": fp32.name, "export_s": round(export_s, 2)}
    if precision == "int8":
        started = time.perf_counter()
        int8 = quantize_int8(fp32, version_dir / "model.int8.onnx")
        info.update(onnx_file=int8.name, quantize_s=round(time.perf_counter() - started, 2))
    return info
