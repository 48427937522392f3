"""The trainer's quality gate: a run is announced as ``model.trained`` only if its metrics meet the thresholds.

Pure functions over the metrics dict and the ``gate_min``/``gate_max`` of ``TrainConfig``; ``sft.train_model``
writes the outcome to ``gate.json`` and MLflow, the handler and ``kefu train`` turn misses into ``model.failed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from services.trainer.config import TrainConfig

GATE_FILE = "gate.json"


def _pair(value: float, bound: float) -> tuple[str, str]:
    # Two decimals read well ("0.14 < 0.90"), but must not print a miss as "1.00 < 1.00" (0.998 vs 1.0).
    a, b = f"{value:.2f}", f"{bound:.2f}"
    return (a, b) if a != b else (f"{value:.6g}", f"{bound:.6g}")


def _misses(metrics: Mapping[str, float], bounds: Mapping[str, float | None], op: str) -> list[str]:
    missed = []
    for name, bound in sorted(bounds.items()):
        if bound is None or name not in metrics:
            continue  # switched off, or not measured by this run (e.g. no regression rows): nothing to judge
        value = float(metrics[name])
        # NaN passes no comparison: an unreadable measurement must not count as a pass.
        ok = value >= bound if op == "<" else value <= bound
        if not ok or math.isnan(value):
            shown, limit = _pair(value, bound)
            missed.append(f"{name} {shown} {op} {limit}")
    return missed


def check(metrics: Mapping[str, float], config: TrainConfig) -> list[str]:
    """The thresholds ``metrics`` missed, human-readable (``"train_exact_match 0.14 < 0.90"``); empty: passed."""
    return _misses(metrics, config.gate_min, "<") + _misses(metrics, config.gate_max, ">")


def unmeasured(metrics: Mapping[str, float], config: TrainConfig) -> list[str]:
    """Thresholds that were skipped because the run did not measure their metric (shown, so a typo is visible)."""
    names = {n for n, b in (*config.gate_min.items(), *config.gate_max.items()) if b is not None}
    return sorted(names - set(metrics))


def report(metrics: Mapping[str, float], config: TrainConfig, missed: list[str]) -> dict[str, Any]:
    """The ``gate.json`` document written with the model and logged to MLflow."""
    return {
        "passed": not missed,
        "missed": missed,
        "unmeasured": unmeasured(metrics, config),
        "gate_min": dict(config.gate_min),
        "gate_max": dict(config.gate_max),
    }
