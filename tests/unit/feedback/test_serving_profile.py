"""The pure parts of the serving profile a release writes: nearest-rank percentiles and what a cluster may carry."""

from __future__ import annotations

from services.feedback.serving_profile import percentiles, redact_cluster


def test_percentiles_are_observed_values_nearest_rank() -> None:
    assert percentiles([]) == {"count": 0}
    assert percentiles(list(range(1, 101))) == {"count": 100, "max": 100, "p50": 50, "p90": 90, "p95": 95, "p99": 99}
    assert percentiles([7, 1, 1000]) == {"count": 3, "max": 1000, "p50": 7, "p90": 1000, "p95": 1000, "p99": 1000}


def test_a_cluster_leaves_redacted_and_without_answer_ids() -> None:
    cluster = {
        "question": "退款到 6222020200112233446 这张卡要多久",
        "count": 3,
        "handed_off": 2,
        "flagged": 1,
        "examples": ["退款到 6222020200112233446 这张卡要多久", "我的邮箱 a@b.com 没收到发票"],
        "answer_ids": ["ans-1", "ans-2", "ans-3"],
        "last_seen": "2026-11-30T10:00:00+00:00",
    }
    out = redact_cluster(cluster)
    assert set(out) == {"question", "count", "handed_off", "flagged", "examples"}
    assert "6222020200112233446" not in str(out) and "a@b.com" not in str(out)
    assert out["examples"][1] == "我的邮箱 [EMAIL] 没收到发票" and (out["count"], out["handed_off"]) == (3, 2)
