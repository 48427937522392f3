"""What the gateway's HTTP routes depend on, as ``Annotated`` types: the gateway, a session, the caller.

Keys come as ``Authorization: Bearer <key>`` only (the OpenAI SDKs send that, and gRPC metadata has the same
name); ``Access`` checks them with a short cache and applies the per-key rate limit, for HTTP and gRPC alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.auth import ADMIN_ROLES, CHAT_ROLES, Principal
from services.gateway.core import Gateway


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


GatewayDep = Annotated[Gateway, Depends(gateway)]


async def session(gw: GatewayDep) -> AsyncIterator[AsyncSession]:
    """A session for the request; a route that writes opens ``session.begin()`` and owns that transaction."""
    async with gw.runtime.sessions() as opened:
        yield opened


async def admin(
    gw: GatewayDep, authorization: Annotated[str | None, Header(description="Bearer <admin API key>")] = None
) -> Principal:
    """The caller, if an admin: 401/403 otherwise, or 429 over the key's rate limit."""
    return await gw.access.authorize(authorization, ADMIN_ROLES)


async def chat_caller(
    gw: GatewayDep, authorization: Annotated[str | None, Header(description="Bearer <kefu API key>")] = None
) -> Principal:
    """The caller, if it may chat (an app or an admin key): 401/403 otherwise, or 429 over the key's rate limit.

    A dependency runs before the body is read into its model, so a caller without a key learns nothing about
    what a valid request looks like."""
    return await gw.access.authorize(authorization, CHAT_ROLES)


SessionDep = Annotated[AsyncSession, Depends(session)]
Admin = Annotated[Principal, Depends(admin)]
ChatCaller = Annotated[Principal, Depends(chat_caller)]
