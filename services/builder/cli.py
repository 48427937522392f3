"""``kefu build``: turn a trained model dir into a gated Triton model version."""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path
from typing import Annotated

import typer

from services.builder.errors import BuildError
from services.builder.repository import DEFAULT_MODEL_NAME
from services.builder.settings import (
    DEFAULT_MAX_QUALITY_DROP,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_MIN_EXACT_MATCH,
    DEFAULT_MIN_REGRESSION,
)


def build_command(
    model_dir: Annotated[
        Path, typer.Argument(help="Trained model dir (config.json, weights, tokenizer, kefu_model.json).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Triton model repository to add the version to.")],
    precision: Annotated[str, typer.Option(help="fp32 | int8 (CPU, ONNX Runtime) | fp16 (GPU, needs CUDA).")] = "fp32",
    dataset: Annotated[
        Path | None,
        typer.Option(help="Dataset dir for gate prompts (default: the model's recorded dataset, else its samples)."),
    ] = None,
    model_name: Annotated[str, typer.Option(help="Triton model name.")] = DEFAULT_MODEL_NAME,
    min_agreement: Annotated[float, typer.Option(help="Gate threshold: share of prompts equal to torch greedy.")] = (
        DEFAULT_MIN_AGREEMENT
    ),
    min_regression: Annotated[
        float, typer.Option(help="Gate threshold: share of approved corrections answered exactly as approved.")
    ] = DEFAULT_MIN_REGRESSION,
    max_quality_drop: Annotated[
        float, typer.Option(help="Gate threshold: how much lower the engine's gold exact match may be than torch's.")
    ] = DEFAULT_MAX_QUALITY_DROP,
    min_exact_match: Annotated[
        float, typer.Option(help="Gate threshold: the engine's gold exact match floor (0: off).")
    ] = DEFAULT_MIN_EXACT_MATCH,
    max_prompts: Annotated[
        int, typer.Option(help="Gate prompts taken from each of eval and train (all regression rows are used).")
    ] = 64,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Generation budget (default: kefu_model.json max_length).")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Do not publish engine.built.")] = False,
) -> None:
    """Export with KV cache, run the quality gate, install a new version; publish engine.built unless --offline."""
    from services.builder.build import build

    try:
        result = build(
            model_dir,
            out,
            precision=precision,
            dataset_dir=dataset,
            model_name=model_name,
            min_agreement=min_agreement,
            min_regression=min_regression,
            max_quality_drop=max_quality_drop,
            min_exact_match=min_exact_match,
            max_prompts_per_split=max_prompts,
            max_new_tokens=max_new_tokens,
        )
    except BuildError as exc:
        typer.secho(f"build failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from exc
    q = result.quality
    typer.echo(
        f"{result.triton_model} version {result.triton_version} ({result.precision}, {result.engine_id}): "
        f"agreement {q['agreement']}, exact match {q['exact_match']} (trained model {q['torch_exact_match']}), "
        f"regression {q['exact_match_regression']} on {q['n_regression']} corrections, {q['decode_tok_s']} tok/s "
        f"-> {result.version_dir}"
    )
    if not offline:
        from services.builder.publish import publish_engine

        published = publish_engine(result)
        if inspect.isawaitable(published):
            asyncio.run(published)
    typer.echo(json.dumps({"engine_id": result.engine_id, "version": result.triton_version}))


def register(app: typer.Typer) -> None:
    """Add ``build`` to the kefu CLI."""
    app.command("build")(build_command)
