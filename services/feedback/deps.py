"""What feedback's routes (JSON API and agent console) depend on, as ``Annotated`` types.

Keys are presented as ``Authorization: Bearer <key>`` or ``X-API-Key`` (the console sends the latter) and looked
up in the shared ``api_keys`` table on every call. ``Agent``: the answers log and flags (role agent or admin);
``Admin``: reviews, releases, drift checks (role admin). 401: no key or an unknown/revoked one; 403: another role.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from libs.common import deps
from libs.common.auth import ADMIN_ROLES, AGENT_ROLES, Principal
from libs.common.runtime import ServiceRuntime
from services.feedback.batcher import ReleaseBatcher
from services.feedback.drift_check import DriftScheduler
from services.feedback.settings import Settings

RuntimeDep = Annotated[ServiceRuntime[Settings], Depends(deps.runtime)]


def settings(rt: RuntimeDep) -> Settings:
    return rt.settings


def batcher(request: Request) -> ReleaseBatcher:
    return request.app.state.batcher


def drift(request: Request) -> DriftScheduler:
    return request.app.state.drift


SettingsDep = Annotated[Settings, Depends(settings)]
BatcherDep = Annotated[ReleaseBatcher, Depends(batcher)]
DriftDep = Annotated[DriftScheduler, Depends(drift)]
Agent = Annotated[Principal, Depends(deps.require(AGENT_ROLES))]
Admin = Annotated[Principal, Depends(deps.require(ADMIN_ROLES))]
