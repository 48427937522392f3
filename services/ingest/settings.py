"""Ingest service settings (``KEFU_*`` env vars)."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import KefuSettings


class Settings(KefuSettings):
    ingest_port: int = Field(default=8082, ge=1, le=65535)
    ingest_max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://{self.bind_host}:{self.ingest_port}"}
