"""The one place that turns a FAQ question into chat messages and a prompt string.

Trainer, builder (Triton model) and gateway all call these unchanged, so the prompt served is byte-identical to the
prompt trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

# Short on purpose: every token of it is paid on every request.
SYSTEM_PROMPT = "你是CloudMax的客服助手。"


def to_messages(question: str, context: str = "") -> list[dict[str, str]]:
    """System + user messages for one question; ``context`` (the FAQ row's ``input``) goes after the question."""
    user = question.strip()
    if context.strip():
        user = f"{user}\n{context.strip()}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


REFERENCES_HEADER = "参考资料："


def references_block(entries: Sequence[tuple[str, str]]) -> str:
    """Retrieved (question, answer) entries as the context the model answers from, numbered in rank order.

    Training (retrieval-augmented rows), the builder's gate and the gateway all call this, so the context the model
    was taught to follow is byte for byte the context it is served.
    """
    if not entries:
        return ""
    lines = [f"[{i}] {q.strip()} {a.strip()}" for i, (q, a) in enumerate(entries, start=1)]
    return "\n".join([REFERENCES_HEADER, *lines])


def grounded_context(row_input: str, entries: Sequence[tuple[str, str]]) -> str:
    """A row's own ``input`` (if any) followed by the references: the ``context`` argument of ``to_messages``."""
    return "\n".join(part for part in (row_input.strip(), references_block(entries)) if part)


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt string the model sees, ending with the assistant header."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def chat_template_sha256(tokenizer: Any) -> str:
    """Fingerprint of the chat template, recorded with the model so builder/gateway can check they use the same one."""
    return hashlib.sha256((tokenizer.chat_template or "").encode("utf-8")).hexdigest()
