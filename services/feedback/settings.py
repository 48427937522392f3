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
            "corrections so one retraining covers several; the demo sets 0 and releases on demand."
        ),
    )
    feedback_release_interval_seconds: float = Field(
        default=0, ge=0, description="Also release whatever is approved every this many seconds (0 = off)."
    )
    feedback_auto_approve: bool = Field(
        default=False,
        description="Approve a flag with a correction or a similar_to entry on arrival (demo); else an admin reviews.",
    )

    feedback_drift_interval_seconds: float = Field(
        default=86400, ge=0, description="Run the question-drift check this often (0 = only on demand)."
    )
    feedback_drift_window_hours: float = Field(
        default=24, gt=0, description="The drift check compares the customer questions of this last window."
    )
    feedback_drift_min_questions: int = Field(
        default=30, ge=1, description="Fewer questions in the window: the check reports figures but never alerts."
    )
    feedback_drift_max_p_value: float = Field(default=0.01, gt=0, le=1, description="KS p-value below this …")
    feedback_drift_min_statistic: float = Field(
        default=0.2, ge=0, le=1, description="… and a KS statistic at least this: the distributions differ."
    )
    feedback_drift_far_confidence: float = Field(
        default=0.2, ge=0, le=1, description="A question whose retrieval confidence is below this is 'far'."
    )
    feedback_drift_max_far_increase: float = Field(
        default=0.15, ge=0, le=1, description="Alert when the share of far questions rises by more than this."
    )

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://{self.bind_host}:{self.feedback_port}"}
