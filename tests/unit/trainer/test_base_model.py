from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.trainer.base_model import OFFLINE_BASE_NAME, build_offline_base, resolve_base_model


def _digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_loads_with_auto_classes(base_dir: Path, tokenizer) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    assert model.config.vocab_size == len(tokenizer)
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_key_value_heads) == (256, 4, 2)
    assert model.config.tie_word_embeddings
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|pad|>",
    )


@pytest.mark.parametrize(
    "text", ["怎么申请增值税专用发票？", "龘靐齉 😀 emoji", "Tab\tand\nnewline ~`^", "ｆｕｌｌ－ｗｉｄｔｈ"]
)
def test_unseen_text_round_trips(tokenizer, text: str) -> None:
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text


def test_chat_template_marks_the_assistant_turn(tokenizer) -> None:
    assert "{% generation %}" in tokenizer.chat_template.replace("{%-", "{%").replace("-%}", "%}")
    conv = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好！"}]
    out = tokenizer.apply_chat_template(conv, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(masked) == "您好！<|eot_id|>"


def test_build_is_deterministic_per_seed(tmp_path: Path, base_dir: Path) -> None:
    same = _digest(build_offline_base(tmp_path / "a", seed=0))
    assert same == _digest(base_dir)
    other = _digest(build_offline_base(tmp_path / "b", seed=1))
    assert other["model.safetensors"] != same["model.safetensors"]
    assert other["tokenizer.json"] == same["tokenizer.json"]


def test_resolve_prefers_the_given_base(tmp_path: Path, base_dir: Path) -> None:
    assert resolve_base_model(base_dir, tmp_path) == base_dir
    with pytest.raises(ValueError, match=r"config\.json"):
        resolve_base_model(tmp_path, tmp_path)


def test_resolve_builds_the_offline_base_once(tmp_path: Path) -> None:
    first = resolve_base_model(None, tmp_path)
    assert first == tmp_path / OFFLINE_BASE_NAME and (first / "config.json").is_file()
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(None, tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [OFFLINE_BASE_NAME]  # no temp dir left behind
