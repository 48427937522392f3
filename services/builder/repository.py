"""Triton model repository layout: ``REPO/<name>/config.pbtxt`` and numbered version folders.

A version is assembled in a hidden staging folder inside ``REPO/<name>/`` (same filesystem) and renamed to its
number only after the quality gate passed, so Triton never sees a half-written or rejected version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from services.builder.errors import BuildError

DEFAULT_MODEL_NAME = "kefu-chat"
MODEL_TEMPLATE = Path(__file__).with_name("triton_model.py")
# The kefu checkout the Triton stub must import ``services.builder.engine`` from.
SOURCE_ROOT = Path(__file__).resolve().parents[2]

CONFIG_TEMPLATE = """\
name: "{name}"
backend: "python"
# Each request is one question of shape [1, 1] (batch dim first). execute() only queues requests for the model's
# continuous-batching decode loop; the dynamic batcher just hands it up to max_batch_size requests per call.
max_batch_size: {max_batch}
model_transaction_policy {{ decoupled: true }}
dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}
input [
  {{ name: "question" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "context" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "max_tokens" data_type: TYPE_INT32 dims: [ 1 ] optional: true }},
  # Sampling (absent or temperature 0: greedy, as the quality gate decoded); seed makes a sampled answer repeatable.
  {{ name: "temperature" data_type: TYPE_FP32 dims: [ 1 ] optional: true }},
  {{ name: "top_p" data_type: TYPE_FP32 dims: [ 1 ] optional: true }},
  {{ name: "seed" data_type: TYPE_INT64 dims: [ 1 ] optional: true }},
  # Sent: each response also carries "logprobs" (JSON, the tokens' log-probabilities and this many alternatives).
  {{ name: "logprobs" data_type: TYPE_INT32 dims: [ 1 ] optional: true }}
]
output [
  {{ name: "delta" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "token_count" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "prompt_tokens" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "finish_reason" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "logprobs" data_type: TYPE_STRING dims: [ 1 ] }}
]
instance_group [ {{ count: {instances} kind: KIND_CPU }} ]
# Keep the previous version loadable so a rollout can step back without a rebuild.
version_policy: {{ latest {{ num_versions: 2 }} }}
parameters {{ key: "kefu_source_root" value {{ string_value: "{source_root}" }} }}
parameters {{ key: "ort_threads" value {{ string_value: "{ort_threads}" }} }}
"""


def check_model_name(name: str) -> str:
    if not name or name.startswith(".") or "/" in name or '"' in name:
        raise BuildError(f"invalid Triton model name {name!r}")
    return name


def versions(model_root: Path) -> list[int]:
    """Existing numeric version folders, ascending."""
    if not model_root.is_dir():
        return []
    return sorted(int(p.name) for p in model_root.iterdir() if p.is_dir() and p.name.isdigit())


def config_pbtxt(
    name: str, *, max_batch: int = 8, instances: int = 1, queue_delay_us: int = 2000, ort_threads: int = 0
) -> str:
    return CONFIG_TEMPLATE.format(
        name=check_model_name(name),
        max_batch=max_batch,
        instances=instances,
        queue_delay_us=queue_delay_us,
        source_root=SOURCE_ROOT,
        ort_threads=ort_threads,
    )


def new_staging_dir(repo_dir: Path, name: str) -> Path:
    """An empty hidden folder beside the versions; Triton ignores non-numeric folders."""
    model_root = Path(repo_dir) / check_model_name(name)
    model_root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=model_root))


def copy_model_py(version_dir: Path) -> None:
    shutil.copyfile(MODEL_TEMPLATE, version_dir / "model.py")


def write_config(repo_dir: Path, name: str, **options: int) -> Path:
    """(Re)write config.pbtxt atomically, so a server loading at that moment never reads a partial file."""
    model_root = Path(repo_dir) / check_model_name(name)
    model_root.mkdir(parents=True, exist_ok=True)
    target = model_root / "config.pbtxt"
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=model_root)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(config_pbtxt(name, **options))
    os.replace(tmp, target)
    return target


def publish_version(staging: Path, repo_dir: Path, name: str) -> tuple[int, Path]:
    """Rename ``staging`` to the next free version number; retries if a concurrent build took that number."""
    model_root = Path(repo_dir) / check_model_name(name)
    for _ in range(100):
        existing = versions(model_root)
        version = (existing[-1] + 1) if existing else 1
        target = model_root / str(version)
        try:
            # rename onto an existing non-empty folder fails, which is what makes the number ours.
            os.rename(staging, target)
        except OSError:
            if target.exists():
                continue
            raise
        return version, target
    raise BuildError(f"could not allocate a version folder under {model_root}")
