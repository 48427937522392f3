"""Feedback service settings (``KEFU_*`` env vars): listener and the release policy."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import KefuSettings


class Settings(KefuSettings):
    feedback_port: int = Field(default=8081, ge=1, le=65535, description="Flag/review API and the agent console.")
    feedback_release_threshold: int = Field(
        default=10,
        ge=0,
        description=(
            "Release a new dataset version once this many flags are approved (0 = never by count). Ten batches "
            "corrections so one retraining covers several; the demo sets 1."
        ),
    )
    feedback_release_interval_seconds: float = Field(
        default=0, ge=0, description="Also release whatever is approved every this many seconds (0 = off)."
    )
    feedback_auto_approve: bool = Field(
        default=False, description="Approve a flag that carries a correction on arrival (demo); else an admin reviews."
    )

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://{self.bind_host}:{self.feedback_port}"}
