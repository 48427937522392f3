"""Answer-quality metrics per engine: outcome, retrieval confidence, answer length (what the alerts read)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.gateway.metrics import observe_answer


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_finished_answer_counts_once_under_its_outcome() -> None:
    engine = "e-metrics-test"
    observe_answer(engine, "canary", "ok", False, 0.92, "在控制台申请发票。")
    observe_answer(engine, "canary", "ok", True, 0.05, "这个问题我需要请人工客服为您处理")
    observe_answer(engine, "canary", "error", False, None, "")
    observe_answer(engine, "canary", "cancelled", False, 0.9, "在")  # the customer left: neither right nor wrong
    for outcome in ("answered", "handed_off", "error"):
        assert sample("kefu_gateway_answers_total", engine=engine, route="canary", outcome=outcome) == 1.0
    confidence = {"engine": engine, "route": "canary"}
    assert sample("kefu_gateway_retrieval_confidence_count", **confidence) == 2.0
    assert sample("kefu_gateway_retrieval_confidence_bucket", le="0.1", **confidence) == 1.0  # the unseen topic
    assert sample("kefu_gateway_answer_characters_count", **confidence) == 1.0  # hand-offs are not answers
    assert sample("kefu_gateway_answer_characters_sum", **confidence) == len("在控制台申请发票。")
