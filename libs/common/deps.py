"""FastAPI dependencies every service's ``deps.py`` builds on: the runtime, a DB session, the caller's principal.

Each service's ``deps.py`` narrows these to its own types (``ServiceRuntime[Settings]``, its role sets) as
``Annotated`` aliases, so a route states what it needs in its signature (full-stack-fastapi-template's
``api/deps.py``). The composition root (``app.py``) puts the runtime on ``app.state.runtime`` in its lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.apikeys import bearer, find_principal
from libs.common.auth import Principal, authenticate
from libs.common.runtime import ServiceRuntime


def runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for the request; a route that writes opens ``session.begin()`` and owns that transaction."""
    async with runtime(request).sessions() as opened:
        yield opened


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer …`` or ``X-API-Key``; never from the URL, where it would be logged."""
    return bearer(request.headers.get("authorization")) or (request.headers.get("x-api-key") or "").strip() or None


def require(roles: frozenset[str]) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that admits a key with one of ``roles`` (else ``Unauthenticated``/``Forbidden``: 401/403),
    looked up on every call: these APIs are called by people and jobs, not at chat rates (the gateway caches)."""

    async def principal(request: Request) -> Principal:
        return await authenticate(presented_key(request), partial(find_principal, runtime(request).sessions), roles)

    return principal
