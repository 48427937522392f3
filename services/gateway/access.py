"""API keys and who may do what: hashed keys with roles, a short lookup cache and a per-key rate limit.

A key is shown once, at creation; the database keeps only its SHA-256. Roles: ``app`` (chat), ``agent`` (flag
answers, in the feedback service), ``admin`` (everything, incl. deploy, rollback and keys). The rate limit is a
token bucket per key and per gateway process: N replicas let a key through N times as fast.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.tables import ApiKey
from services.gateway.errors import forbidden, rate_limited, unauthenticated

ROLES = ("app", "agent", "admin")
CHAT = frozenset({"app", "admin"})
FLAG = frozenset({"agent", "admin"})
ADMIN = frozenset({"admin"})
KEY_PREFIX = "kefu_"


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    rate_limit_per_minute: int | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def create_key(
    session: AsyncSession, role: str, *, name: str = "", rate_limit_per_minute: int | None = None
) -> tuple[str, str]:
    """Store a new key (hash only) in the caller's transaction; returns ``(key_id, key)``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    key_id = "k" + secrets.token_hex(6)
    # The id is part of the key so logs and the DB can name a key without ever holding the secret.
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    session.add(
        ApiKey(key_id=key_id, key_hash=hash_key(key), role=role, name=name, rate_limit_per_minute=rate_limit_per_minute)
    )
    return key_id, key


def bearer(authorization: str | None) -> str | None:
    """The key from an ``Authorization: Bearer <key>`` value (HTTP header or gRPC metadata)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


class TokenBucket:
    """``per_minute`` requests a minute, bursts up to that many; ``take`` returns seconds to wait (0: allowed)."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = self.capacity
        self.at = time.monotonic()

    def take(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Access:
    """Authenticate, authorize and rate-limit one call. Lookups are cached for ``cache_seconds`` so a chat call
    costs no database round trip; a revoked key stops working within that time."""

    def __init__(self, sessions: async_sessionmaker, *, default_rate_per_minute: int, cache_seconds: float) -> None:
        self.sessions = sessions
        self.default_rate = default_rate_per_minute
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._buckets: dict[str, TokenBucket] = {}

    async def lookup(self, key: str) -> Principal | None:
        digest = hash_key(key)
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        async with self.sessions() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        principal = (
            Principal(row.key_id, row.role, row.rate_limit_per_minute)
            if row is not None and row.revoked_at is None
            else None
        )
        if len(self._cache) > 10_000:  # unknown keys are cached too: bound what a key-guessing client can grow
            self._cache.clear()
        self._cache[digest] = (principal, time.monotonic() + self.cache_seconds)
        return principal

    async def authorize(self, authorization: str | None, allowed: frozenset[str]) -> Principal:
        """The caller's principal; raises 401 (no/unknown key), 403 (role) or 429 (rate limit)."""
        key = bearer(authorization)
        if key is None:
            raise unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        principal = await self.lookup(key)
        if principal is None:
            raise unauthenticated("unknown or revoked API key")
        if principal.role not in allowed:
            raise forbidden(principal.role, allowed)
        bucket = self._buckets.get(principal.key_id)
        if bucket is None:
            bucket = TokenBucket(principal.rate_limit_per_minute or self.default_rate)
            self._buckets[principal.key_id] = bucket
        wait = bucket.take()
        if wait > 0:
            raise rate_limited(wait)
        return principal
