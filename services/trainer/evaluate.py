"""Greedy generation on FAQ rows and the scores reported for a model: exact match and character F1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from libs.common.prompting import render_prompt, to_messages
from libs.common.scoring import score
from services.trainer.data import FaqRow


@torch.inference_mode()
def generate_answers(
    model: Any, tokenizer: Any, rows: Sequence[FaqRow], *, max_new_tokens: int = 128, batch_size: int = 16
) -> list[str]:
    """Greedy answers with the serving prompt, batched by similar length with left padding and the KV cache."""
    prompts = [render_prompt(tokenizer, to_messages(r.instruction, r.input)) for r in rows]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    tokenizer.padding_side = "left"
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        # The chat template already emits bos; add_special_tokens would add a second one.
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        out = model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
        )
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for i, text in zip(idx, texts, strict=True):
            answers[i] = text.strip()
    return answers


def evaluate_rows(
    model: Any, tokenizer: Any, rows: Sequence[FaqRow], *, max_new_tokens: int = 128, batch_size: int = 16
) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Scores plus per-row samples (question, reference, prediction) for the report."""
    predictions = generate_answers(model, tokenizer, rows, max_new_tokens=max_new_tokens, batch_size=batch_size)
    samples = [
        {"question": r.instruction, "reference": r.output, "prediction": p}
        for r, p in zip(rows, predictions, strict=True)
    ]
    return score(predictions, [r.output for r in rows]), samples
