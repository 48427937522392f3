"""Question drift, pure parts: the two-sample comparison and the clustering of unanswered questions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from libs.datasets.options import IngestOptions
from libs.datasets.pipeline import prepare_dataset, write_dataset
from services.feedback.drift import Comparison, Thresholds, cluster_questions, compare, content_tokens, summary
from services.feedback.drift_check import Reference


def _samples(seed: int, n: int, conf_mean: float, len_mean: float) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    conf = np.clip(rng.normal(conf_mean, 0.15, n), 0, 1)
    length = np.clip(rng.normal(len_mean, 3, n), 2, None)
    return conf.tolist(), length.tolist()


def test_the_same_distribution_crosses_nothing() -> None:
    ref_conf, ref_len = _samples(0, 300, 0.7, 12)
    cur_conf, cur_len = _samples(1, 200, 0.7, 12)
    result = compare(cur_conf, ref_conf, cur_len, ref_len)
    assert result.judged and not result.drifted, result.crossed
    assert result.figures["confidence"]["ks_p_value"] > 0.01


def test_lower_confidence_and_more_far_questions_cross() -> None:
    ref_conf, ref_len = _samples(0, 300, 0.7, 12)
    cur_conf, cur_len = _samples(1, 200, 0.3, 12)
    result = compare(cur_conf, ref_conf, cur_len, ref_len)
    assert result.drifted
    assert any(line.startswith("retrieval confidence") for line in result.crossed)
    assert any(line.startswith("far from every entry") for line in result.crossed)
    assert not any(line.startswith("question length") for line in result.crossed)
    assert result.figures["far_share"]["current"] > result.figures["far_share"]["reference"]


def test_higher_confidence_is_no_alarm_but_longer_questions_are() -> None:
    ref_conf, ref_len = _samples(0, 300, 0.5, 12)
    cur_conf, cur_len = _samples(1, 200, 0.9, 30)
    result = compare(cur_conf, ref_conf, cur_len, ref_len)
    assert [line.split(":")[0] for line in result.crossed] == ["question length"]


def test_a_tiny_shift_in_a_huge_window_is_significant_but_not_an_alarm() -> None:
    ref_conf, ref_len = _samples(0, 20_000, 0.70, 12)
    cur_conf, cur_len = _samples(1, 20_000, 0.68, 12)
    result = compare(cur_conf, ref_conf, cur_len, ref_len)
    assert result.figures["confidence"]["ks_p_value"] < 0.01
    assert not result.drifted


def test_a_small_window_is_reported_not_judged() -> None:
    ref_conf, ref_len = _samples(0, 300, 0.7, 12)
    result = compare([0.0] * 5, ref_conf, [40.0] * 5, ref_len, Thresholds(min_questions=30))
    assert not result.judged and not result.drifted
    assert result.figures["far_share"]["current"] == 1.0


def test_summary_of_nothing() -> None:
    assert summary([]) == {"n": 0.0}
    assert summary([1.0, 2.0, 3.0])["p50"] == 2.0


def _item(i: int, question: str, **kw: object) -> dict[str, object]:
    return {"answer_id": f"a{i}", "question": question, **kw}


def test_similar_wordings_cluster_and_the_biggest_come_first() -> None:
    questions = [
        "发票抬头写错了能改吗",
        "发票抬头写错了怎么改",
        "请问发票抬头写错了能改吗？",
        "发票抬头写错了能改吗",
        "服务器被攻击了怎么办",
        "服务器被攻击怎么办啊",
        "你们支持比特币付款吗",
    ]
    items = [_item(i, q, handoff=i != 1, flagged=i == 1) for i, q in enumerate(questions)]
    clusters = [c.to_json() for c in cluster_questions(items)]
    assert [c["count"] for c in clusters] == [4, 2, 1]
    first = clusters[0]
    assert first["question"] == "发票抬头写错了能改吗"  # the most frequent wording leads
    assert first["handed_off"] == 3 and first["flagged"] == 1
    assert len(first["examples"]) == 3  # distinct wordings
    assert clusters[1]["question"].startswith("服务器被攻击")


def test_filler_words_do_not_make_questions_similar() -> None:
    assert "请问" not in content_tokens("请问怎么退款") and "退款" in content_tokens("请问怎么退款")
    clusters = cluster_questions([_item(0, "请问怎么退款"), _item(1, "请问怎么改密码")])
    assert len(clusters) == 2


SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"


@pytest.fixture(scope="module")
def sample_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    records = [json.loads(line) for line in (SAMPLE / "cloudmax_faq.jsonl").read_text(encoding="utf-8").splitlines()]
    prepared = prepare_dataset([r for r in records if r], IngestOptions(), source="cloudmax_faq.jsonl")
    out = tmp_path_factory.mktemp("ds") / prepared.dataset_id
    write_dataset(prepared, out)
    return Reference(out)


def _check(ref: Reference, questions: list[str]) -> Comparison:
    conf = [ref.confidence_of(q) for q in questions]
    return compare(conf, ref.confidence, [float(len(q)) for q in questions], ref.length, Thresholds(min_questions=10))


def test_the_leave_one_out_reference_accepts_real_customer_wording(sample_reference: Reference) -> None:
    """The sample's customer questions (in scope, plus its ~23 % out-of-scope) are ordinary traffic, not drift;
    scoring the training questions with their own entry would have flagged them (confidence ~1.0)."""
    asked = [
        json.loads(line) for line in (SAMPLE / "cloudmax_questions.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert not _check(sample_reference, [q["question"] for q in asked if q]).drifted
    assert sum(sample_reference.confidence) / len(sample_reference.confidence) < 0.6


def test_unseen_topics_cross_against_the_sample(sample_reference: Reference) -> None:
    unseen = [
        "火星旅游签证怎么办理",
        "推荐一部好看的电影",
        "红烧肉怎么做才好吃",
        "明天北京天气如何",
        "养猫要注意什么",
    ] * 4
    result = _check(sample_reference, unseen)
    assert any(line.startswith("retrieval confidence") for line in result.crossed)
    far = result.figures["far_share"]
    # Information-weighted confidence: chit-chat sits at ~0.1-0.45 (everyday characters such as 天, 北, 京 are in
    # some entry), the sample's own questions held out from their entries at ~0.09 below the bar.
    assert far["current"] >= 0.6 and far["reference"] <= 0.15
    assert any(line.startswith("far from every entry") for line in result.crossed)
