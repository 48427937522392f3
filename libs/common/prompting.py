"""The one place that turns a FAQ question into chat messages and a prompt string.

Trainer, builder (Triton model) and gateway all call these unchanged, so the prompt served is byte-identical to the
prompt trained on.
"""

from __future__ import annotations

import hashlib
from typing import Any

# Short on purpose: every token of it is paid on every request.
SYSTEM_PROMPT = "你是CloudMax的客服助手。"


def to_messages(question: str, context: str = "") -> list[dict[str, str]]:
    """System + user messages for one question; ``context`` (the FAQ row's ``input``) goes after the question."""
    user = question.strip()
    if context.strip():
        user = f"{user}\n{context.strip()}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt string the model sees, ending with the assistant header."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def chat_template_sha256(tokenizer: Any) -> str:
    """Fingerprint of the chat template, recorded with the model so builder/gateway can check they use the same one."""
    return hashlib.sha256((tokenizer.chat_template or "").encode("utf-8")).hexdigest()
