"""Builder service settings (``KEFU_*`` env vars), including the Triton server it loads engines into."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from libs.common.settings import KefuSettings

#: Share of gate prompts whose engine output must equal the trained model's greedy output.
DEFAULT_MIN_AGREEMENT = 0.98
#: Share of the dataset's approved corrections (regression.jsonl) the engine must answer exactly as approved.
DEFAULT_MIN_REGRESSION = 1.0
#: How much lower the engine's gold exact match may be than the trained model's on the same prompts.
DEFAULT_MAX_QUALITY_DROP = 0.02
#: Absolute floor on the engine's gold exact match; 0 leaves it off (the trainer judges the model's quality).
DEFAULT_MIN_EXACT_MATCH = 0.0


class Settings(KefuSettings):
    builder_port: int = Field(default=8084, ge=1, le=65535)
    builder_precision: Literal["fp32", "int8", "fp16"] = "fp32"
    builder_min_agreement: float = Field(default=DEFAULT_MIN_AGREEMENT, ge=0, le=1)
    builder_min_regression: float = Field(default=DEFAULT_MIN_REGRESSION, ge=0, le=1)
    builder_max_quality_drop: float = Field(default=DEFAULT_MAX_QUALITY_DROP, ge=0, le=1)
    builder_min_exact_match: float = Field(default=DEFAULT_MIN_EXACT_MATCH, ge=0, le=1)
    builder_max_prompts: int = Field(
        default=64, ge=1, description="Gate prompts per split (train, eval); regression rows are all used."
    )
    builder_max_attempts: int = Field(default=2, ge=1)
    triton_model_name: str = "kefu-chat"
    triton_repository: Path | None = Field(default=None, description="Unset: $KEFU_HOME/triton/repository.")
    triton_host: str = "127.0.0.1"
    triton_http_port: int = Field(default=8000, ge=1, le=65535)
    triton_grpc_port: int = Field(default=8001, ge=1, le=65535)
    triton_metrics_port: int = Field(default=8002, ge=1, le=65535)
    triton_embedded: bool = Field(default=True, description="`kefu up` runs Triton from the nvidia-pytriton wheel.")

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://{self.bind_host}:{self.builder_port}"}

    @property
    def repository(self) -> Path:
        return self.triton_repository or self.home / "triton" / "repository"

    @property
    def triton_grpc_url(self) -> str:
        return f"{self.triton_host}:{self.triton_grpc_port}"
