"""Pure pieces of the feedback service: key extraction, labels, settings, lineage formatting, the page's templates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.requests import Request

from libs.common.apikeys import hash_key
from libs.common.auth import Principal
from libs.common.deps import presented_key
from services.feedback.flags import FlagView
from services.feedback.lineage import format_lineage
from services.feedback.routes import agent_label
from services.feedback.settings import Settings
from services.feedback.web import templates


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"Authorization": "Bearer kefu_abc"}, "kefu_abc"),
        ({"Authorization": "bearer   kefu_abc  "}, "kefu_abc"),
        ({"X-API-Key": "kefu_xyz"}, "kefu_xyz"),
        ({"Authorization": "Basic dXNlcjpwdw==", "X-API-Key": "kefu_xyz"}, "kefu_xyz"),
        ({"Authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(request_with(headers)) == key


def test_keys_are_compared_as_sha256_hex() -> None:
    # The gateway stores hashlib.sha256(key).hexdigest(); this is that value for "abc".
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_agent_label_always_names_the_key() -> None:
    who = Principal(key_id="k123", role="agent", name="desk")
    assert agent_label(who, None) == "desk (k123)"
    assert agent_label(who, " 小王 ") == "小王 (k123)"
    assert agent_label(Principal("k9", "agent", ""), "  ") == "k9"


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert defaults.feedback_port == 8081 and defaults.feedback_release_threshold == 10
    assert defaults.feedback_release_interval_seconds == 0 and defaults.feedback_auto_approve is False
    monkeypatch.setenv("KEFU_FEEDBACK_AUTO_APPROVE", "true")
    monkeypatch.setenv("KEFU_FEEDBACK_RELEASE_THRESHOLD", "1")
    monkeypatch.setenv("KEFU_FEEDBACK_PORT", "9001")
    configured = Settings()
    assert configured.feedback_auto_approve and configured.feedback_release_threshold == 1
    assert configured.endpoints() == {"http": f"http://{configured.bind_host}:9001"}


def test_lineage_lines() -> None:
    doc = {
        "query": "eng-1",
        "kind": "engine",
        "dataset_id": "ds-2",
        "dataset": {"source": "feedback:ds-1", "parent": "ds-1", "counts": {"train": 80, "regression": 2}},
        "ancestors": [{"dataset_id": "ds-1", "source": "cloudmax_faq.jsonl"}],
        "models": [
            {
                "model_id": "m-1",
                "run_id": "r-1",
                "metrics": {"eval_exact_match": 0.5, "note": "x"},
                "engines": [
                    {
                        "engine_id": "eng-1",
                        "triton": "kefu-chat v3",
                        "precision": "int8",
                        "passed_gate": True,
                        "deployments": [
                            {"id": 7, "state": "live", "traffic_percent": 100.0, "started_at": "2026-01-01T00:00"}
                        ],
                    }
                ],
            }
        ],
        "flags": [{"flag_id": "fl-1", "status": "released", "question": "Q?", "correction": "A.", "agent": "w"}],
    }
    assert format_lineage(doc) == [
        "dataset ds-2 (feedback:ds-1; train 80, regression 2)",
        "  ↑ parent ds-1 (cloudmax_faq.jsonl)",
        "  run r-1 → model m-1 (eval_exact_match 0.500)",
        "    engine eng-1 (int8, kefu-chat v3, gate passed)",
        "      deployment #7 live 100% since 2026-01-01T00:00",
        "flags behind ds-2: 1",
        "  fl-1 [released] 'Q?' → 'A.' (by w)",
    ]
    unlinked = {**doc, "dataset_id": None, "kind": "answer", "query": "ans-1"}
    assert format_lineage(unlinked) == ["answer ans-1: not linked to any dataset"]


def test_lineage_lines_show_failed_runs_with_the_missed_thresholds() -> None:
    doc = {
        "query": "ds-3",
        "kind": "dataset",
        "dataset_id": "ds-3",
        "dataset": {"source": "faq.jsonl", "parent": None, "counts": {"train": 15}},
        "ancestors": [],
        "models": [],
        "failures": [
            {
                "run_id": "r-9",
                "reason": "quality gate: train_exact_match 0.14 < 0.90; paraphrase_exact_match 0.20 < 0.50",
                "missed": ["train_exact_match 0.14 < 0.90", "paraphrase_exact_match 0.20 < 0.50"],
                "metrics": {"train_exact_match": 0.14, "paraphrase_exact_match": 0.2},
                "occurred_at": "2026-01-01T00:00",
            },
            {"run_id": None, "reason": "FileNotFoundError: gone", "missed": [], "metrics": {}, "occurred_at": "x"},
        ],
        "flags": [],
    }
    assert format_lineage(doc) == [
        "dataset ds-3 (faq.jsonl; train 15)",
        "  run r-9 → model FAILED the quality gate (not announced)",
        "    missed train_exact_match 0.14 < 0.90",
        "    missed paraphrase_exact_match 0.20 < 0.50",
        "  run - → training FAILED: FileNotFoundError: gone",
        "flags behind ds-3: 0",
    ]


def _flag(**changes: object) -> FlagView:
    values: dict = {
        "flag_id": "fl-1",
        "answer_id": "ans-1",
        "status": "open",
        "reason": "wrong",
        "correction": None,
        "final_correction": None,
        "agent": "w",
        "reviewer": None,
        "review_note": None,
        "released_dataset_id": None,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "reviewed_at": None,
        "similar_to": None,
        "entry_question": None,
        "question": "<img src=x onerror=alert(1)>",
        "answer": "a & b",
        "engine_id": "e",
        "model_id": "m",
        "dataset_id": "d",
    }
    return FlagView(**{**values, **changes})


def test_flag_card_escapes_user_text_and_offers_only_possible_actions() -> None:
    html = templates.get_template("_flag.html").render(flag=_flag())
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html and "a &amp; b" in html
    assert 'value="approve"' not in html and 'value="edit"' in html and 'value="reject"' in html
    with_fix = templates.get_template("_flag.html").render(flag=_flag(correction="fix"))
    assert 'value="approve"' in with_fix
    wording = templates.get_template("_flag.html").render(flag=_flag(similar_to="kb-1", entry_question="如何退款？"))
    assert 'value="approve"' in wording and "kb-1" in wording and "如何退款？" in wording
    released = templates.get_template("_flag.html").render(flag=_flag(status="released", released_dataset_id="ds-9"))
    assert "<form" not in released and "ds-9" in released
    assert _flag().to_json()["created_at"] == "2026-01-01T00:00:00+00:00"


def test_the_consoles_entry_questions_are_read_again_after_a_failed_read(tmp_path: Path) -> None:
    from libs.common.knowledge import KNOWLEDGE_FILE, entries_from_rows, to_jsonl
    from services.feedback.web import _questions_of

    version = tmp_path / "ds-late"
    with pytest.raises(OSError):
        _questions_of(version)  # not there yet (a version still being copied in)
    version.mkdir()
    (version / KNOWLEDGE_FILE).write_bytes(to_jsonl(entries_from_rows([("如何申请发票？", "在费用中心申请。")])))
    assert list(_questions_of(version).values()) == ["如何申请发票？"]  # the failure was not cached
