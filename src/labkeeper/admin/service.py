"""Settings and audit rules: typed values, masked secrets, every change audited."""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from labkeeper.admin import repository
from labkeeper.admin.models import Setting
from labkeeper.admin.registry import REGISTRY, SettingDef
from labkeeper.core import audit
from labkeeper.core.audit import MASK, Actor
from labkeeper.core.db import after_commit
from labkeeper.core.errors import Invalid, NotFound

_CACHE = "settings_cache"
_CHANGED = "settings_changed"
# Settings change rarely and are read on most requests. Each process keeps one snapshot and
# reads the table again at most every SNAPSHOT_SECONDS, so a change made through another
# process shows within that; a change made here drops the snapshot once it commits.
SNAPSHOT_SECONDS = 1.0
_snapshot: tuple[float, dict[str, Any]] | None = None


def forget_snapshot() -> None:
    """Read the settings table again on next use (after a change, or a test's reset)."""
    global _snapshot
    _snapshot = None


def changed(session: Session) -> None:
    """Note that this transaction wrote settings: it reads its own writes from now on, and
    every reader sees them once it commits."""
    session.info.pop(_CACHE, None)
    if not session.info.get(_CHANGED):
        session.info[_CHANGED] = True
        after_commit(session, forget_snapshot)


def _definition(key: str) -> SettingDef:
    try:
        return REGISTRY[key]
    except KeyError:
        raise NotFound(f"there is no setting called {key!r}", details={"key": key}) from None


def _stored(session: Session) -> dict[str, Any]:
    """The stored values (read-only): the session's view, else the process's fresh snapshot."""
    global _snapshot
    cache = session.info.get(_CACHE)
    if cache is not None:
        return cache
    snapshot, now, own_writes = _snapshot, time.monotonic(), session.info.get(_CHANGED)
    if snapshot is not None and snapshot[0] > now and not own_writes:
        cache = snapshot[1]
    else:
        cache = repository.setting_values(session)
        if not own_writes:
            _snapshot = (now + SNAPSHOT_SECONDS, cache)
    session.info[_CACHE] = cache
    return cache


def get(session: Session, key: str) -> Any:
    """The value of a setting: the stored override or the default."""
    definition = _definition(key)
    stored = _stored(session)
    return stored.get(key, definition.default)


def get_all(session: Session, *, mask: bool = True) -> list[dict[str, Any]]:
    """Every known setting with its value, default and description; secrets masked."""
    stored = _stored(session)
    out = []
    for key, d in REGISTRY.items():
        value = stored.get(key, d.default)
        out.append(
            {
                "key": key,
                "value": MASK if (mask and d.sensitive and value) else value,
                "default": None if d.sensitive else d.default,
                "category": d.category,
                "description": d.description,
                "is_sensitive": d.sensitive,
                "is_default": key not in stored,
            }
        )
    return out


def put(session: Session, *, key: str, value: Any, actor: Actor) -> Any:
    """Validate and store one setting; audited (secrets masked in the trail)."""
    definition = _definition(key)
    try:
        clean = definition.validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(f"{key}: {first['msg']}", field=key) from None
    rows = repository.setting_rows(session)
    row = rows.get(key)
    old = row.value if row else definition.default
    if row is None:
        row = Setting(key=key, category=definition.category, is_sensitive=definition.sensitive)
        session.add(row)
    row.value = clean
    row.updated_by = actor.user_id
    session.flush()
    changed(session)
    shown_old, shown_new = (MASK, MASK) if definition.sensitive else (old, clean)
    audit.record(
        session,
        actor,
        "settings.update",
        "setting",
        key,
        payload={"old": shown_old, "new": shown_new},
    )
    return clean


def reset(session: Session, *, key: str, actor: Actor) -> Any:
    """Forget a stored override so the default applies again."""
    definition = _definition(key)
    row = repository.setting_rows(session).get(key)
    if row is not None:
        session.delete(row)
        session.flush()
        changed(session)
        audit.record(session, actor, "settings.reset", "setting", key)
    return definition.default
