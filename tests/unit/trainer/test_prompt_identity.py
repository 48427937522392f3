"""The prompt TRL trains on must be byte-identical to the prompt the builder and gateway render at serving time."""

from __future__ import annotations

from pathlib import Path

from libs.common.prompting import SYSTEM_PROMPT, chat_template_sha256, grounded_context, render_prompt, to_messages
from services.trainer.config import TrainConfig
from services.trainer.data import FaqRow, read_rows, to_dataset
from services.trainer.sft import build_sft_config
from tests.unit.trainer.conftest import FIXTURE_DATASET


def test_messages_are_system_then_user() -> None:
    assert to_messages(" 怎么退款？ ") == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "怎么退款？"},
    ]
    assert to_messages("怎么退款？", "订单号 A-1")[1]["content"] == "怎么退款？\n订单号 A-1"


def test_references_follow_the_question_numbered_in_rank_order() -> None:
    context = grounded_context("订单号 A-1", [("如何退款？", " 在订单页申请。 "), ("发票？", "费用中心。")])
    assert context == "订单号 A-1\n参考资料：\n[1] 如何退款？ 在订单页申请。\n[2] 发票？ 费用中心。"
    assert grounded_context("", []) == "" and grounded_context("", [("q", "a")]) == "参考资料：\n[1] q a"
    assert to_messages("退款咋弄", context)[1]["content"] == "退款咋弄\n" + context


def test_prompting_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, libs.common.prompting; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3]).returncode == 0


def test_trained_prompt_is_the_served_prompt(base_dir: Path, tokenizer, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    refs = [("如何申请退款？", "在「订单」页点击「申请退款」。"), ("发票怎么开？", "在「费用中心」申请。")]
    rows = [
        *read_rows(FIXTURE_DATASET / "train.jsonl")[:6],
        FaqRow("订单能改地址吗？", "订单号 A-1  ", "可以。"),
        # A retrieval-augmented row, exactly as the gateway sends it (question + grounded_context to Triton).
        FaqRow("退款咋弄", grounded_context("", refs), "在「订单」页点击「申请退款」。"),
    ]
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(base_dir),
        args=build_sft_config(TrainConfig(packing=False), 256, tmp_path, has_eval=False, tracked=False, epochs=1),
        train_dataset=to_dataset(rows),
        processing_class=tokenizer,
    )
    # A fresh load, as the gateway does it from the model dir.
    serving_tokenizer = AutoTokenizer.from_pretrained(base_dir)
    assert chat_template_sha256(serving_tokenizer) == chat_template_sha256(tokenizer)
    for row, example in zip(rows, trainer.train_dataset, strict=True):
        ids, labels = example["input_ids"], example["labels"]
        start = next(i for i, label in enumerate(labels) if label != -100)  # completion-only loss: prompt is masked
        served = render_prompt(serving_tokenizer, to_messages(row.instruction, row.input))
        assert tokenizer.decode(ids[:start]).encode("utf-8") == served.encode("utf-8")
        assert serving_tokenizer(served, add_special_tokens=False).input_ids == ids[:start]
        assert tokenizer.decode(ids[start:]) == row.output + "<|eot_id|>"  # it learns the answer and to stop
        assert labels[start:] == ids[start:]


def test_packing_keeps_every_row_whole_and_masks_only_prompts(base_dir: Path, tokenizer, tmp_path: Path) -> None:
    """Packing (a config option) puts rows padding-free in one sequence; each must stay one whole example, its
    prompt masked."""
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    rows = read_rows(FIXTURE_DATASET / "train.jsonl")[:6]
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(base_dir),
        args=build_sft_config(TrainConfig(packing=True), 128, tmp_path, has_eval=False, tracked=False, epochs=1),
        train_dataset=to_dataset(rows),
        processing_class=tokenizer,
    )
    packed = trainer.train_dataset
    assert len(packed) < len(rows)  # several rows share a sequence
    pieces = []
    for example in packed:
        offset = 0
        for length in example["seq_lengths"]:
            pieces.append((example["input_ids"][offset : offset + length], example["labels"][offset : offset + length]))
            offset += length
    texts = sorted(tokenizer.decode(ids) for ids, _ in pieces)
    expected = sorted(
        render_prompt(tokenizer, to_messages(r.instruction, r.input)) + r.output + "<|eot_id|>" for r in rows
    )
    assert texts == expected
    for ids, labels in pieces:
        start = next(i for i, label in enumerate(labels) if label != -100)
        assert (
            tokenizer.decode(ids[:start]).endswith("assistant<|end_header_id|>\n\n") and labels[start:] == ids[start:]
        )
