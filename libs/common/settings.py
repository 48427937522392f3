"""Settings shared by every service, read from ``KEFU_*`` environment variables and validated at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KefuSettings(BaseSettings):
    """Base settings; each service subclasses this with its own port and knobs."""

    model_config = SettingsConfigDict(env_prefix="KEFU_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path.home() / ".kefu", description="Artifact root (datasets/, models/, engines/).")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL (postgresql+asyncpg://…). Unset: SQLite at $KEFU_HOME/kefu.db.",
    )
    migrate_on_start: bool = Field(default=True, description="Run Alembic migrations when a service starts.")
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_session_timeout_ms: int = Field(
        default=6000, ge=1000, description="Real Kafka's minimum is 6000; tests use less (Tansu allows it)."
    )
    kafka_heartbeat_interval_ms: int = Field(default=1500, ge=100)
    consumer_retry_attempts: int = Field(
        default=3, ge=1, description="Handler attempts before a failing event is dead-lettered (poison: one)."
    )
    consumer_retry_backoff_seconds: float = Field(default=0.5, ge=0, description="Wait after the first failure.")
    consumer_retry_max_backoff_seconds: float = Field(default=4.0, ge=0, description="Longest wait (doubles).")
    bind_host: str = "127.0.0.1"
    outbox_poll_seconds: float = Field(default=0.2, gt=0)
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str | None) -> str | None:
        if not v:
            return None
        if v.startswith(("postgresql://", "postgres://")):
            # Accept the URL people copy from psql docs; the services need the async driver.
            return "postgresql+asyncpg://" + v.split("://", 1)[1]
        if not v.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("KEFU_DATABASE_URL must be postgresql[+asyncpg]:// or sqlite+aiosqlite://")
        return v

    @field_validator("kafka_bootstrap")
    @classmethod
    def _host_port(cls, v: str) -> str:
        for part in v.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"KEFU_KAFKA_BOOTSTRAP entry {part!r} is not host:port")
        return v

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'kefu.db'}"

    def endpoints(self) -> dict[str, str]:
        """Where this process listens, by protocol (``http``, ``grpc``…); services override it."""
        return {}
