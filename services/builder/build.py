"""One build: checkpoint -> ONNX (+INT8) engine in a staging folder -> quality gate -> numbered Triton version.

Only a version that passed the gate is renamed into the repository; a rejected one leaves nothing there except its
report under ``REPO/.rejected/`` (Triton in explicit mode never looks at it).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from libs.common.artifacts import tree_sha256
from services.builder import repository
from services.builder.engine import ENGINE_META, Engine
from services.builder.errors import BuildError
from services.builder.export import export_engine_files, load_checkpoint
from services.builder.gate import run_gate
from services.builder.gate_checks import Thresholds
from services.builder.gate_prompts import resolve_prompts, retrieval_manifest
from services.builder.settings import (
    DEFAULT_MAX_QUALITY_DROP,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_MIN_EXACT_MATCH,
    DEFAULT_MIN_REGRESSION,
)

PRECISIONS = ("fp32", "int8", "fp16")


log = logging.getLogger("kefu.builder.build")


@dataclass(frozen=True)
class BuildResult:
    """What ``engine.built`` announces, plus where the version and its report are."""

    engine_id: str
    model_id: str
    dataset_id: str
    triton_model: str
    triton_version: int
    precision: str
    quality: dict[str, float | bool | str]
    passed_gate: bool
    version_dir: Path
    report_path: Path


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise BuildError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16":
        if not torch.cuda.is_available():
            raise BuildError("--precision fp16 builds a TensorRT GPU engine and needs CUDA (none found); use fp32/int8")
        raise BuildError("--precision fp16: the TensorRT engine builder is not part of this kefu build yet")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def find_published(repo_dir: Path, model_name: str, model_id: str, precision: str) -> BuildResult | None:
    """The version of ``model_id`` at ``precision`` already in the repository, if any.

    A build job interrupted after its version was renamed into the repository (and possibly loaded by Triton) but
    before the engine was recorded is retried: reusing that version instead of building a second one keeps one
    engine to one version, so two copies of one engine can never push the live version out of the versions Triton
    keeps loaded. Only gated versions are ever renamed into the repository, so a found one passed the gate.
    """
    model_root = Path(repo_dir) / repository.check_model_name(model_name)
    for version in reversed(repository.versions(model_root)):
        version_dir = model_root / str(version)
        try:
            meta = json.loads((version_dir / ENGINE_META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not a kefu engine version (or unreadable): never ours to reuse
        if meta.get("model_id") != model_id or meta.get("precision") != precision or not meta.get("engine_id"):
            continue
        return BuildResult(
            engine_id=str(meta["engine_id"]),
            model_id=model_id,
            dataset_id=str(meta["dataset_id"]),
            triton_model=model_name,
            triton_version=version,
            precision=precision,
            quality=dict(meta.get("quality") or {}),
            passed_gate=True,
            version_dir=version_dir,
            report_path=version_dir / "quality.json",
        )
    return None


def build(
    model_dir: Path,
    repo_dir: Path,
    *,
    precision: str = "fp32",
    dataset_dir: Path | None = None,
    model_name: str = repository.DEFAULT_MODEL_NAME,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    min_regression: float = DEFAULT_MIN_REGRESSION,
    max_quality_drop: float = DEFAULT_MAX_QUALITY_DROP,
    min_exact_match: float = DEFAULT_MIN_EXACT_MATCH,
    max_prompts_per_split: int = 64,
    max_new_tokens: int | None = None,
) -> BuildResult:
    """Build, gate and install an engine version; raises BuildError (nothing installed) if anything fails."""
    _check_precision(precision)
    repository.check_model_name(model_name)
    ckpt = load_checkpoint(model_dir)
    prompts = resolve_prompts(ckpt, dataset_dir, max_prompts_per_split)
    budget = int(max_new_tokens or ckpt.meta["max_length"])
    staging = repository.new_staging_dir(repo_dir, model_name)
    started = time.perf_counter()
    try:
        files = export_engine_files(ckpt, staging, precision)
        log.info("exported %s (%s) in %.1fs", ckpt.meta["model_id"], precision, time.perf_counter() - started)
        ckpt.tokenizer.save_pretrained(staging)
        repository.copy_model_py(staging)
        meta: dict[str, Any] = {
            "model_id": ckpt.meta["model_id"],
            "dataset_id": ckpt.meta["dataset_id"],
            "chat_template_sha256": ckpt.meta["chat_template_sha256"],
            "precision": precision,
            "onnx_file": files["onnx_file"],
            **ckpt.shape,
            "eos_token_ids": ckpt.eos_token_ids,
            "pad_token_id": ckpt.tokenizer.pad_token_id
            if ckpt.tokenizer.pad_token_id is not None
            else ckpt.eos_token_ids[0],
            "max_new_tokens": budget,
            # k and the hand-off threshold the trainer calibrated: the gateway serves this engine with them.
            "retrieval": retrieval_manifest(ckpt.path),
        }
        _write_json(staging / ENGINE_META, meta)
        # The id covers the engine files and their settings, so rebuilding the same model gives the same id.
        engine_id = f"sha-{tree_sha256(staging)[:16]}"
        thresholds = Thresholds(min_agreement, min_regression, max_quality_drop, min_exact_match)
        started = time.perf_counter()
        report = run_gate(ckpt, Engine.from_dir(staging), prompts, max_new_tokens=budget, thresholds=thresholds)
        log.info(
            "gate of %s %s in %.1fs on %d prompts %s",
            engine_id, "passed" if report["passed"] else "FAILED", time.perf_counter() - started,
            report["n_prompts"], report["failed_checks"] or "",
        )  # fmt: skip
        report.update(engine_id=engine_id, model_id=meta["model_id"], precision=precision, **files)
        if not report["passed"]:
            rejected = Path(repo_dir) / ".rejected" / f"{model_name}-{engine_id}.quality.json"
            rejected.parent.mkdir(parents=True, exist_ok=True)
            _write_json(rejected, report)
            raise BuildError(
                f"quality gate failed: {'; '.join(report['failed_checks'])} ({report['n_prompts']} prompts, "
                f"{precision}); nothing installed, report at {rejected}"
            )
        quality = {k: v for k, v in report.items() if isinstance(v, float | int | bool | str)}
        # engine.built's quality is flat (float | bool | str): the list of reasons travels as one string.
        quality["failed_checks"] = "; ".join(report["failed_checks"])
        _write_json(staging / ENGINE_META, {**meta, "engine_id": engine_id, "quality": quality})
        _write_json(staging / "quality.json", report)
        repository.write_config(repo_dir, model_name)
        version, version_dir = repository.publish_version(staging, repo_dir, model_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(
        engine_id=engine_id,
        model_id=str(meta["model_id"]),
        dataset_id=str(meta["dataset_id"]),
        triton_model=model_name,
        triton_version=version,
        precision=precision,
        quality=quality,
        passed_gate=True,
        version_dir=version_dir,
        report_path=version_dir / "quality.json",
    )
