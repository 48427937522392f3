"""Trainer service settings (``KEFU_*`` env vars)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from libs.common.settings import KefuSettings


class Settings(KefuSettings):
    trainer_port: int = Field(default=8083, ge=1, le=65535)
    trainer_base_model: Path | None = Field(
        default=None, description="HF checkpoint dir (e.g. Llama-3-8B-Instruct). Unset: the built-in tiny base."
    )
    trainer_config: Path | None = Field(default=None, description="YAML of TrainConfig hyperparameters.")
    trainer_max_attempts: int = Field(default=2, ge=1, description="Runs a crash may interrupt before giving up.")
    mlflow_tracking_uri: str | None = Field(
        default=None, description="Unset: sqlite under KEFU_HOME (MLflow keeps its own schema and alembic table)."
    )

    tune_storage: str | None = Field(
        default=None,
        description="Optuna study database (SQLAlchemy URL) of `kefu tune`. Unset: sqlite optuna.db next to "
        "mlflow.db — not inside it: both keep their schema version in an `alembic_version` table.",
    )

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://{self.bind_host}:{self.trainer_port}"}

    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    def study_storage(self) -> str:
        return self.tune_storage or f"sqlite:///{(self.home / 'optuna.db').resolve()}"
