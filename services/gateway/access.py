"""Who may do what in the gateway: role sets per call, a short key-lookup cache and a per-key rate limit.

Keys themselves (hashing, creation, roles) are ``libs.common.apikeys``. The rate limit (``ratelimit.py``) is per
key: per gateway process by default (N replicas let a key through N times as fast), or shared by every replica
through Redis when ``KEFU_REDIS_URL`` is set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.apikeys import bearer, find_key, hash_key
from services.gateway.errors import forbidden, rate_limited, unauthenticated
from services.gateway.ratelimit import LocalLimiter, RateLimiter

CHAT = frozenset({"app", "admin"})
FLAG = frozenset({"agent", "admin"})
ADMIN = frozenset({"admin"})


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    rate_limit_per_minute: int | None


class Access:
    """Authenticate, authorize and rate-limit one call. Lookups are cached for ``cache_seconds`` so a chat call
    costs no database round trip; a revoked key stops working within that time."""

    def __init__(
        self,
        sessions: async_sessionmaker,
        *,
        default_rate_per_minute: int,
        cache_seconds: float,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.sessions = sessions
        self.default_rate = default_rate_per_minute
        self.cache_seconds = cache_seconds
        self.limiter = limiter or LocalLimiter()
        self._cache: dict[str, tuple[Principal | None, float]] = {}

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
        wait = await self.limiter.take(principal.key_id, principal.rate_limit_per_minute or self.default_rate)
        if wait > 0:
            raise rate_limited(wait)
        return principal

    async def aclose(self) -> None:
        await self.limiter.aclose()
