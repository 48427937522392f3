"""Who may upload datasets: an API key (``Authorization: Bearer <key>`` or ``X-API-Key``) with the ``data`` or
``admin`` role, looked up by SHA-256 in the shared ``api_keys`` table (keys come from ``kefu keys create``).

``data`` exists so an ETL job can publish datasets without an admin key: an upload trains, builds and deploys, so
it must be authenticated, but the uploader need not roll back deployments or mint keys. 401: no key or an
unknown/revoked one; 403: a valid key of another role. Checked once per upload (no cache: uploads are rare).
"""

from __future__ import annotations

from fastapi import Request

from libs.common.apikeys import bearer, find_key
from libs.common.http import ApiError

UPLOAD_ROLES = frozenset({"data", "admin"})
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def require_uploader(request: Request) -> str:
    """FastAPI dependency: the key id of a caller allowed to upload, else 401/403 in the common error shape."""
    key = bearer(request.headers.get("authorization")) or (request.headers.get("x-api-key") or "").strip()
    if not key:
        raise ApiError(401, "unauthenticated", "an API key is required (Authorization: Bearer <key>)", _CHALLENGE)
    async with request.app.state.runtime.sessions() as session:
        row = await find_key(session, key)
    if row is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked API key", _CHALLENGE)
    if row.role not in UPLOAD_ROLES:
        needs = " or ".join(sorted(UPLOAD_ROLES))
        raise ApiError(403, "forbidden", f"role {row.role!r} may not do this; needs {needs}")
    return row.key_id
