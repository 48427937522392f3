"""Gateway service settings (``KEFU_*`` env vars): listeners, Triton, limits and the canary policy."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import KefuSettings


class Settings(KefuSettings):
    gateway_port: int = Field(default=8080, ge=1, le=65535, description="OpenAI-compatible HTTP API.")
    gateway_grpc_port: int = Field(default=50051, ge=1, le=65535, description="kefu.gateway.v1.ChatService.")
    # Same names and defaults as the builder's settings, so one KEFU_TRITON_* variable configures both.
    triton_host: str = "127.0.0.1"
    triton_grpc_port: int = Field(default=8001, ge=1, le=65535)
    triton_model_name: str = "kefu-chat"
    gateway_rate_limit_per_minute: int = Field(default=600, ge=1, description="Per key, unless the key sets one.")
    redis_url: str | None = Field(
        default=None,
        description="KEFU_REDIS_URL (redis://host:port/db): rate limits shared by every gateway replica. Unset: "
        "per process. `kefu up` starts a memory-only redis-server when it names this machine and nothing answers.",
    )
    gateway_redis_timeout_seconds: float = Field(
        default=0.25, gt=0, description="A slower or unreachable Redis: this process limits on its own meanwhile."
    )
    gateway_max_question_chars: int = Field(default=4000, ge=1)
    gateway_max_body_bytes: int = Field(default=256 * 1024, ge=1024, description="Larger HTTP/gRPC bodies: 413.")
    gateway_max_tokens: int = Field(default=2048, ge=1, description="Upper bound clients may ask for.")
    gateway_key_cache_seconds: float = Field(default=5.0, ge=0, description="How long a revoked key may still pass.")
    gateway_grace_seconds: float = Field(default=5.0, ge=0, description="In-flight gRPC calls finish on shutdown.")
    canary_percent: float = Field(default=10.0, gt=0, le=100, description="Traffic share of a new engine.")
    canary_requests: int = Field(default=50, ge=1, description="Canary answers (real + replayed) before the verdict.")
    canary_seconds: float = Field(
        default=600.0, gt=0, description="Verdict after this long if the canary has canary_min_answers by then."
    )
    canary_min_answers: int = Field(
        default=20, ge=1, description="No promotion with fewer canary answers (real + replayed), however long."
    )
    canary_shadow: bool = Field(
        default=True, description="Replay questions to the canary and the live engine; promotion waits for it."
    )
    canary_shadow_recent: int = Field(default=30, ge=0, description="Recent customer questions replayed.")
    canary_shadow_eval: int = Field(default=30, ge=0, description="Held-out FAQ questions (eval split) replayed.")
    canary_shadow_max_tokens: int = Field(default=128, ge=1)
    canary_shadow_concurrency: int = Field(default=4, ge=1, description="Replayed questions in flight at once.")
    canary_min_corrections: float = Field(
        default=1.0, ge=0, le=1, description="Share of approved corrections the canary must answer as approved."
    )
    canary_max_quality_drop: float = Field(
        default=0.03, ge=0, le=1, description="Canary replay char-F1 may be at most this below the live engine's."
    )
    canary_max_handoff_increase: float = Field(default=0.05, ge=0, le=1)
    canary_max_error_rate: float = Field(default=0.05, ge=0, le=1)
    canary_max_latency_ratio: float = Field(
        default=1.5,
        gt=0,
        description="Canary ms/token may be at most this × the live engine's (replay: median of per-question ratios;"
        " real answers: p50 over p50).",
    )
    handoff_reply: str = Field(
        default="这个问题我需要请人工客服为您处理，请拨打客服热线 {hotline} 或稍候，人工客服会尽快联系您。",
        min_length=1,
        description="Said instead of guessing when retrieval confidence is below the engine's threshold.",
    )
    handoff_hotline: str = Field(default="400-820-8820", description="Put into {hotline} of the hand-off reply.")
    gateway_min_follow_rate: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="An engine whose measured hot-fix follow rate (edited reference -> edited answer) is below this "
        "serves approved corrections as is until retrained, instead of generating over them; 0 always generates.",
    )
    gateway_answer_check: bool = Field(
        default=True,
        description="Hand off an answer whose opening is not in its references (below the engine's calibrated bar): "
        "the first few characters are held back until judged. False streams every answer as generated.",
    )
    rollout_poll_seconds: float = Field(default=1.0, gt=0, description="Routing refresh and canary checks.")

    def endpoints(self) -> dict[str, str]:
        return {
            "http": f"http://{self.bind_host}:{self.gateway_port}",
            "grpc": f"{self.bind_host}:{self.gateway_grpc_port}",
        }

    def handoff_text(self) -> str:
        return self.handoff_reply.replace("{hotline}", self.handoff_hotline)

    @property
    def triton_grpc_url(self) -> str:
        return f"{self.triton_host}:{self.triton_grpc_port}"
