"""Queries of the admin domain: settings rows and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from labkeeper.admin.models import AuditLog, Setting


def setting_values(session: Session) -> dict[str, Any]:
    """Every stored setting's value by key (two columns: read on most requests)."""
    return {key: value for key, value in session.execute(_SETTING_VALUES)}


_SETTING_VALUES = select(Setting.key, Setting.value)


def setting_rows(session: Session) -> dict[str, Setting]:
    """Every stored setting row by key."""
    return {row.key: row for row in session.scalars(select(Setting))}


def audit_query(
    *,
    actor_id: int | None = None,
    action: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = None,
) -> Select[Any]:
    """Audit rows matching the filters, newest first."""
    stmt = select(AuditLog).order_by(AuditLog.id.desc())
    if actor_id is not None:
        stmt = stmt.where(AuditLog.actor_id == actor_id)
    if action:
        stmt = stmt.where(AuditLog.action.startswith(action))
    if entity_type:
        stmt = stmt.where(AuditLog.entity_type == entity_type)
    if entity_id:
        stmt = stmt.where(AuditLog.entity_id == entity_id)
    if outcome:
        stmt = stmt.where(AuditLog.outcome == outcome)
    if since:
        stmt = stmt.where(AuditLog.created_at >= since)
    if until:
        stmt = stmt.where(AuditLog.created_at < until)
    if q:
        like = f"%{q}%"
        stmt = stmt.where(
            AuditLog.message.ilike(like)
            | AuditLog.actor_username.ilike(like)
            | AuditLog.action.ilike(like)
        )
    return stmt
