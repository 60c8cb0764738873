"""Bodies of the settings and audit APIs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from labkeeper.core.schemas import Body, Read


class SettingRead(Read):
    key: str
    value: Any
    default: Any
    category: str
    description: str
    is_sensitive: bool
    is_default: bool


class SettingWrite(Body):
    value: Any


class AuditRead(Read):
    id: int
    created_at: datetime
    actor_id: int | None
    actor_username: str | None
    actor_role: str | None
    action: str
    entity_type: str
    entity_id: str | None
    payload: dict[str, Any] | None
    outcome: str
    message: str | None
    ip: str | None
