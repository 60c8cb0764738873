"""Notifications: try a channel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends

from labkeeper.auth.deps import Principal, require
from labkeeper.core.db import DbSession
from labkeeper.core.routing import APIRouter
from labkeeper.notify import service
from labkeeper.notify.schemas import TestNotification, TestQueued

router = APIRouter()
DB = DbSession


@router.post(
    "/notifications/test", response_model=TestQueued, status_code=202, tags=["notifications"]
)
def send_test(
    body: TestNotification,
    session: DB,
    principal: Annotated[Principal, Depends(require("settings:write"))],
) -> Any:
    """Queue a test message on one channel (the job's log shows how delivery went)."""
    return {"job_log_id": service.send_test(session, channel=body.channel, actor=principal)}
