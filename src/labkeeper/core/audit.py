"""The audit trail: one row per change, written in the same transaction as the change."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import Insert, insert
from sqlalchemy.orm import Session

from labkeeper.core.db import write

SECRET_MARKERS = (
    "password",
    "secret",
    "token",
    "private_key",
    "ssh_key",
    "community",
    "passphrase",
)
MASK = "***"


@dataclass(frozen=True)
class Actor:
    """Who did something: a signed-in user, or the system itself (jobs)."""

    user_id: int | None
    username: str
    role: str | None = None
    ip: str | None = None
    user_agent: str | None = None


SYSTEM = Actor(user_id=None, username="system", role="system")


@lru_cache(maxsize=1024)
def _secret(key: object) -> bool:
    name = str(key).lower()
    return any(marker in name for marker in SECRET_MARKERS)


def scrub(value: Any) -> Any:
    """A copy of a payload with every secret-looking field masked."""
    if isinstance(value, dict):
        return {k: (MASK if v and _secret(k) else scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: object = None,
    *,
    payload: dict[str, Any] | None = None,
    outcome: str = "success",
    message: str | None = None,
) -> None:
    """Write an audit row in the session's transaction (at once, past the unit of work)."""
    write(
        session,
        _insert(),
        {
            "actor_id": actor.user_id,
            "actor_username": actor.username,
            "actor_role": actor.role,
            "action": action,
            "entity_type": entity_type,
            "entity_id": None if entity_id is None else str(entity_id),
            "payload": scrub(payload) if payload else None,
            "outcome": outcome,
            "message": message,
            "ip": actor.ip,
            "user_agent": (actor.user_agent or "")[:255] or None,
        },
    )


@cache
def _insert() -> Insert:
    from labkeeper.admin.models import AuditLog  # the admin domain imports this module

    return insert(AuditLog.__table__)  # type: ignore[arg-type]
