"""The whole loop on the real embedded stack, driven exactly as a new user would: `kefu demo --json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kefu.demo import SAMPLE_QUESTIONS
from kefu.registry import service_names
from tests.conftest import free_port
from tests.integration.test_stack import stack_env

pytestmark = pytest.mark.slow
GROUNDING = Path(__file__).resolve().parents[1] / "fixtures" / "grounding"


@pytest.mark.timeout(900)  # the whole demo (two trainings) while the suite's other worker trains too
def test_demo_runs_the_loop_and_reports_it(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "home")
    # The suite's other worker trains while this runs: the canary's latency check (retrained vs live ms/token over a
    # few replayed questions) then measures the neighbour, not the engine (rolled back once at 9.5 vs 9.4 ms/token).
    env["KEFU_CANARY_MAX_LATENCY_RATIO"] = "3"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kefu",
            "demo",
            "--json",
            "--kafka-port",
            str(free_port()),
            "--home",
            str(tmp_path / "demo"),
            # The demo's own set first (its figures are the summary's), then the hand-written test fixture.
            "--questions",
            str(SAMPLE_QUESTIONS),
            "--questions",
            str(GROUNDING / "paraphrases.jsonl"),
            "--questions",
            str(GROUNDING / "out_of_scope.jsonl"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])

    assert summary["stages"][0] == "dataset.ready"
    assert "model.trained" in summary["stages"]
    assert summary["train_exact_match"] >= 0.9
    assert summary["pipeline_seconds"] > 0
    if "builder" in service_names():
        assert "engine.built" in summary["stages"]
        assert summary["agreement"] >= 0.98
    if "gateway" in service_names():
        assert "deployment.live" in summary["stages"]
        # Answers to trained questions came back through the gRPC gateway, each with an answer id.
        assert summary["answers"] and all(a["answer"] and a["answer_id"] for a in summary["answers"])
        # Customers' own words, through the OpenAI API. The floors sit below what the tiny offline base measured
        # (README, closing notes), far above the ~11% of the ungrounded model; the goals (95% / 90%) are not met.
        sets = summary["question_sets"]
        demo, hard, outside = sets[SAMPLE_QUESTIONS.name], sets["paraphrases.jsonl"], sets["out_of_scope.jsonl"]
        print(
            "\ngrounded answers:",
            json.dumps({k: {m: v for m, v in r.items() if m != "wrong"} for k, r in sets.items()}),
        )
        assert demo["in_scope"] == 40 and hard["in_scope"] >= 40 and outside["out_of_scope"] >= 40
        assert demo["paraphrase_accuracy"] >= 0.4 and demo["handoff_in_scope"] <= 0.25
        assert demo["handoff_out_of_scope"] >= 0.75 and outside["handoff_out_of_scope"] >= 0.3
        assert hard["paraphrase_accuracy"] >= 0.05
        # Follow-ups asked with their conversation, right fact in the answer (kefu.conversations_eval): measured
        # 0.60 beside 0.825 single-turn and 0.48 for the same follow-ups alone (README, follow-up questions).
        two = summary["two_turn"]
        assert two["conversations"] == 25 and two["two_turn_accuracy"] >= 0.4
        assert two["two_turn_accuracy"] > two["followup_alone_accuracy"]
    if "feedback" in service_names():
        # The loop closed: the agent's correction was released, retrained, built, promoted and is now the answer.
        assert summary["feedback_fixed"] is True, summary.get("corrected_answer")
        # Before retraining: the tiny engine cannot follow an edited reference (hot-fix follow rate 0), so the
        # gateway serves the approved text as is, within seconds of approval.
        assert summary["live_fix_seconds"] is not None and summary["live_fix_seconds"] <= 10, summary
        assert summary["live_fix_by"] == "approved text"
        assert summary["feedback_seconds"] > 0
        # The retrained engine was promoted on evidence: the shadow replay against the live engine, corrections kept.
        assert "replayed" in summary["canary_verdict"] and "corrections honoured 1.0" in summary["canary_verdict"]
        assert summary["missing"] == []
    # Every lifecycle event the demo waited for was printed by the supervisor as it happened.
    for stage in summary["stages"]:
        assert any(line.startswith(stage) for line in proc.stdout.splitlines())
