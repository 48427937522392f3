"""Ingest service settings (``KEFU_*`` env vars)."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import KefuSettings


class Settings(KefuSettings):
    ingest_port: int = Field(default=8082, ge=1, le=65535)
    # Limits of the upload API (the CLI reads what the operator points it at and has none).
    ingest_max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0, description="Largest uploaded file.")
    ingest_max_rows: int = Field(default=100_000, gt=0, description="Most records an upload (or its query) may hold.")
    ingest_query_timeout_seconds: float = Field(default=10.0, gt=0, description="Longest a SQLite upload's query runs.")

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://{self.bind_host}:{self.ingest_port}"}
