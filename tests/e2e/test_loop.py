"""The whole loop on the real embedded stack, driven exactly as a new user would: `kefu demo --json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kefu.registry import service_names
from tests.conftest import free_port
from tests.integration.test_stack import stack_env

pytestmark = pytest.mark.slow


def test_demo_runs_the_loop_and_reports_it(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "home")
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
    if "feedback" in service_names():
        # The loop closed: the agent's correction was released, retrained, built, promoted and is now the answer.
        assert summary["feedback_fixed"] is True, summary.get("corrected_answer")
        assert summary["feedback_seconds"] > 0
        assert summary["missing"] == []
    # Every lifecycle event the demo waited for was printed by the supervisor as it happened.
    for stage in summary["stages"]:
        assert any(line.startswith(stage) for line in proc.stdout.splitlines())
