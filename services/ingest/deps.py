"""What ingest's routes depend on, as ``Annotated`` types: its runtime and settings, a session, the uploader.

Who may upload: a key with the ``data`` or ``admin`` role (``libs.common.auth``), presented as
``Authorization: Bearer <key>`` or ``X-API-Key`` and looked up on every upload (uploads are rare: no cache). An
upload trains, builds and deploys, so it must be authenticated, but an ETL job's key need not roll back
deployments or mint keys. 401: no key or an unknown/revoked one; 403: a valid key of another role.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common import deps
from libs.common.auth import UPLOAD_ROLES, Principal
from libs.common.runtime import ServiceRuntime
from services.ingest.settings import Settings

RuntimeDep = Annotated[ServiceRuntime[Settings], Depends(deps.runtime)]


def settings(rt: RuntimeDep) -> Settings:
    return rt.settings


SettingsDep = Annotated[Settings, Depends(settings)]
SessionDep = Annotated[AsyncSession, Depends(deps.session)]
Uploader = Annotated[Principal, Depends(deps.require(UPLOAD_ROLES))]
