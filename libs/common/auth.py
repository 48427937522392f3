"""Who is calling: the one ``Principal`` and the one role vocabulary of every service's API.

A key (``libs.common.apikeys``: hashing, creation, lookup) has one role; each API admits a set of roles, and
``admin`` is in every set. ``data`` exists so an ETL job can upload datasets without a key that could also deploy,
roll back or mint keys. Checking is the same everywhere (``authenticate``): no key or an unknown/revoked one is
``Unauthenticated`` (HTTP 401, gRPC UNAUTHENTICATED), a valid key of another role is ``Forbidden`` (403,
PERMISSION_DENIED). These are plain exceptions: ``libs.common.http`` maps them to statuses for every app, and the
gateway to its gRPC codes too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from libs.common.tables import ApiKey


class Role(StrEnum):
    APP = "app"  # chat with the gateway (a customer-facing application's key)
    AGENT = "agent"  # read the answers log and flag answers (feedback)
    DATA = "data"  # upload datasets (ingest)
    ADMIN = "admin"  # everything, incl. reviews, deploy, rollback and keys


#: What each kind of call admits. A ``StrEnum`` member equals (and hashes as) its string, so a role read from the
#: ``api_keys`` table is checked with ``in`` directly.
CHAT_ROLES = frozenset({Role.APP, Role.ADMIN})
AGENT_ROLES = frozenset({Role.AGENT, Role.ADMIN})
UPLOAD_ROLES = frozenset({Role.DATA, Role.ADMIN})
ADMIN_ROLES = frozenset({Role.ADMIN})

MISSING_KEY = "an API key is required (Authorization: Bearer <key>)"
UNKNOWN_KEY = "unknown or revoked API key"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the key's (non-secret) id, its role, and what the services record about it."""

    key_id: str
    role: str
    name: str = ""
    rate_limit_per_minute: int | None = None  # None: the gateway's default limit

    @classmethod
    def of(cls, row: ApiKey) -> Principal:
        return cls(row.key_id, row.role, row.name or "", row.rate_limit_per_minute)

    @property
    def label(self) -> str:
        """Who did it, for the flags table: the key's name if it has one, and always its id."""
        return f"{self.name} ({self.key_id})" if self.name else self.key_id


class AuthError(Exception):
    """The caller may not make this call; the message says why, for the caller."""


class Unauthenticated(AuthError):
    """No key, or one that is unknown or revoked."""


class Forbidden(AuthError):
    """A valid key whose role is not admitted here."""

    def __init__(self, role: str, needed: frozenset[str]) -> None:
        super().__init__(f"role {role!r} may not do this; needs {' or '.join(sorted(needed))}")
        self.role, self.needed = role, needed


async def authenticate(
    key: str | None, lookup: Callable[[str], Awaitable[Principal | None]], roles: frozenset[str]
) -> Principal:
    """The principal of ``key`` if its role is in ``roles``; ``lookup`` finds a stored key (cached or not)."""
    if not key:
        raise Unauthenticated(MISSING_KEY)
    principal = await lookup(key)
    if principal is None:
        raise Unauthenticated(UNKNOWN_KEY)
    if principal.role not in roles:
        raise Forbidden(principal.role, roles)
    return principal
