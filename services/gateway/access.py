"""The gateway's key check: ``libs.common.auth``'s principal and roles, a short key-lookup cache, a per-key rate limit.

Keys themselves (hashing, creation) are ``libs.common.apikeys``; roles and ``Principal`` are ``libs.common.auth``
(the chat APIs admit ``CHAT_ROLES``, the admin API ``ADMIN_ROLES``). The rate limit (``ratelimit.py``) is per
key: per gateway process by default (N replicas let a key through N times as fast), or shared by every replica
through Redis when ``KEFU_REDIS_URL`` is set.
"""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.apikeys import bearer, find_key, hash_key
from libs.common.auth import AuthError, Principal, authenticate
from services.gateway.errors import from_auth, rate_limited
from services.gateway.ratelimit import LocalLimiter, RateLimiter


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
        principal = Principal.of(row) if row is not None else None
        if len(self._cache) > 10_000:  # unknown keys are cached too: bound what a key-guessing client can grow
            self._cache.clear()
        self._cache[digest] = (principal, time.monotonic() + self.cache_seconds)
        return principal

    async def authorize(self, authorization: str | None, allowed: frozenset[str]) -> Principal:
        """The caller's principal; raises 401 (no/unknown key), 403 (role) or 429 (rate limit) as ``GatewayError``s,
        which both APIs answer (HTTP status, gRPC code)."""
        try:
            principal = await authenticate(bearer(authorization), self.lookup, allowed)
        except AuthError as exc:
            raise from_auth(exc) from None
        wait = await self.limiter.take(principal.key_id, principal.rate_limit_per_minute or self.default_rate)
        if wait > 0:
            raise rate_limited(wait)
        return principal

    async def aclose(self) -> None:
        await self.limiter.aclose()
