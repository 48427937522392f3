"""Who may do what in the gateway: role sets per call, a short key-lookup cache and a per-key rate limit.

Keys themselves (hashing, creation, roles) are ``libs.common.apikeys``. The rate limit is a token bucket per key
and per gateway process: N replicas let a key through N times as fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.apikeys import bearer, find_key, hash_key
from services.gateway.errors import forbidden, rate_limited, unauthenticated

CHAT = frozenset({"app", "admin"})
FLAG = frozenset({"agent", "admin"})
ADMIN = frozenset({"admin"})


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    rate_limit_per_minute: int | None


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
            row = await find_key(session, key)
        principal = Principal(row.key_id, row.role, row.rate_limit_per_minute) if row is not None else None
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
