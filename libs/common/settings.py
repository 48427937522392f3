"""Settings shared by every service, read from ``KEFU_*`` environment variables and validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
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
    # Kafka client security, for every client a service or the CLI opens (libs/common/kafka_security.py).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="PLAINTEXT for the embedded broker; SSL / SASL_SSL for a real cluster."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = Field(default=None, description="Never logged (SecretStr).")
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM); unset: the system's CAs.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate (PEM) for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Its private key (PEM).")
    kafka_ssl_check_hostname: bool = True
    consumer_retry_attempts: int = Field(
        default=3, ge=1, description="Handler attempts before a failing event is dead-lettered (poison: one)."
    )
    consumer_retry_backoff_seconds: float = Field(default=0.5, ge=0, description="Wait after the first failure.")
    consumer_retry_max_backoff_seconds: float = Field(default=4.0, ge=0, description="Longest wait (doubles).")
    job_lease_seconds: float = Field(
        default=30.0,
        ge=0.5,
        description="A running job's lease, renewed every third of it by its runner's heartbeat; another replica "
        "takes the job over only after it expired (so a crashed runner's job restarts within this time).",
    )
    bind_host: str = "127.0.0.1"
    outbox_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the outbox relay looks for rows nobody announced (another process's, or ones left by "
        "a crash); a service publishes its own at once (``kick_outbox``). At 0.2 s these polls were about half of the "
        "idle services' CPU (five services 14% -> 7% of a core at 1 s).",
    )
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

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Self:
        """Refuse at start what would only fail at the first connection, with the setting to fix."""
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"KEFU_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KEFU_KAFKA_SASL_USERNAME and "
                "KEFU_KAFKA_SASL_PASSWORD"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("KEFU_KAFKA_SSL_CERTFILE and KEFU_KAFKA_SSL_KEYFILE go together (mutual TLS)")
        tls = self.kafka_security_protocol in ("SSL", "SASL_SSL")
        if not tls and (self.kafka_ssl_cafile or self.kafka_ssl_certfile):
            raise ValueError(
                f"KEFU_KAFKA_SSL_* files are set but KEFU_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} "
                "does not use TLS (use SSL or SASL_SSL)"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'kefu.db'}"

    def endpoints(self) -> dict[str, str]:
        """Where this process listens, by protocol (``http``, ``grpc``…); services override it."""
        return {}
