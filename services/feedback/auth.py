"""API-key check for the feedback API: ``Authorization: Bearer <key>`` or ``X-API-Key``, looked up by SHA-256.

Keys are created by the gateway (``kefu keys create``) and stored only as their SHA-256 hex; this service reads the
same ``api_keys`` table. 401: no key or an unknown/revoked one; 403: a valid key whose role may not do this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.ext.asyncio import async_sessionmaker

from libs.common.apikeys import bearer, find_key
from libs.common.http import ApiError

AGENT_ROLES = frozenset({"agent", "admin"})
ADMIN_ROLES = frozenset({"admin"})


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    name: str

    @property
    def label(self) -> str:
        """Who did it, for the flags table: the key's name if it has one, and always its (non-secret) id."""
        return f"{self.name} ({self.key_id})" if self.name else self.key_id


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer …`` or ``X-API-Key``; never from the URL, where it would be logged."""
    return bearer(request.headers.get("authorization")) or (request.headers.get("x-api-key") or "").strip() or None


async def lookup_key(sessions: async_sessionmaker, key: str) -> Principal | None:
    async with sessions() as session:
        row = await find_key(session, key)
    return Principal(row.key_id, row.role, row.name or "") if row is not None else None


def require(roles: frozenset[str]) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency that admits a key with one of ``roles``."""

    async def dependency(request: Request) -> Principal:
        key = presented_key(request)
        unauthenticated = {"WWW-Authenticate": "Bearer"}
        if key is None:
            raise ApiError(
                401, "unauthenticated", "an API key is required (Authorization: Bearer <key>)", unauthenticated
            )
        principal = await lookup_key(request.app.state.runtime.sessions, key)
        if principal is None:
            raise ApiError(401, "unauthenticated", "unknown or revoked API key", unauthenticated)
        if principal.role not in roles:
            raise ApiError(
                403, "forbidden", f"role {principal.role!r} may not do this; needs {' or '.join(sorted(roles))}"
            )
        return principal

    return dependency
