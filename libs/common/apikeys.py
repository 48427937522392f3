"""API keys, shared by every service that checks them (the gateway creates them, feedback reads them too).

A key is shown once, at creation; the ``api_keys`` table keeps only its SHA-256, so a database dump leaks no key.
Roles and who a key is once found (``Principal``) are ``libs.common.auth``.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.common.auth import Principal, Role
from libs.common.tables import ApiKey

ROLES = tuple(role.value for role in Role)
KEY_PREFIX = "kefu_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def bearer(authorization: str | None) -> str | None:
    """The key from an ``Authorization: Bearer <key>`` value (HTTP header or gRPC metadata)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


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


async def find_key(session: AsyncSession, key: str) -> ApiKey | None:
    """The stored, not revoked row of a presented key, or None."""
    return await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))


async def find_principal(sessions: async_sessionmaker, key: str) -> Principal | None:
    """Who a presented key is, in a session of its own (a check must not join the caller's transaction)."""
    async with sessions() as session:
        row = await find_key(session, key)
    return Principal.of(row) if row is not None else None
