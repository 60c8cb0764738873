"""Settings and audit rules: typed values, masked secrets, every change audited."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from labkeeper.admin import repository
from labkeeper.admin.models import Setting
from labkeeper.admin.registry import REGISTRY, SettingDef
from labkeeper.core import audit
from labkeeper.core.audit import MASK, Actor
from labkeeper.core.errors import Invalid, NotFound

_CACHE = "settings_cache"


def _definition(key: str) -> SettingDef:
    try:
        return REGISTRY[key]
    except KeyError:
        raise NotFound(f"there is no setting called {key!r}", details={"key": key}) from None


def _stored(session: Session) -> dict[str, Any]:
    cache = session.info.get(_CACHE)
    if cache is None:
        cache = repository.setting_values(session)
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
    session.info.pop(_CACHE, None)
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
        session.info.pop(_CACHE, None)
        audit.record(session, actor, "settings.reset", "setting", key)
    return definition.default
