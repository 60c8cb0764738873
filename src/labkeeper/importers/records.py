"""Lookups and inserts by natural key that the seed importers share (users, tags, devices), and
the import steps both seed schemas have (settings, audit log), given each source's mapping."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import bcrypt
from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from labkeeper.admin import service as settings_service
from labkeeper.admin.models import AuditLog, Setting
from labkeeper.admin.registry import REGISTRY
from labkeeper.auth import repository as auth_repo
from labkeeper.auth.models import RoleAssignment, User
from labkeeper.auth.permissions import ROLES
from labkeeper.core.security import is_legacy_hash
from labkeeper.core.time import utcnow
from labkeeper.importers.common import Run, Source, clean, dt, js
from labkeeper.inventory import repository as inventory_repo
from labkeeper.inventory.models import DEVICE_STATUSES, Device, DeviceType, Tag

UNUSABLE = "!imported-without-a-usable-password"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def find(session: Session, model: Any, **key: Any) -> int | None:
    """The id of a `model` row whose columns equal `key` (None compares as IS NULL), if any."""
    return session.scalar(
        select(model.id).where(*(getattr(model, column) == value for column, value in key.items()))
    )


def password_hash(stored: str | None) -> tuple[str, str | None]:
    """The hash to keep for a seed password, and a note when it could not be kept as it was.

    bcrypt hashes are kept as they are: they verify on login and are re-hashed with argon2id.
    A bare SHA-256 hex digest (the scheduler's "SHA256" hashes) is wrapped in bcrypt, which is
    exactly the legacy format (bcrypt of the SHA-256 hex digest), so it verifies the same way.
    """
    value = (stored or "").strip()
    if is_legacy_hash(value) or value.startswith("$argon2"):
        return value, None
    if _HEX64.fullmatch(value):
        wrapped = bcrypt.hashpw(value.lower().encode(), bcrypt.gensalt(rounds=12)).decode()
        return wrapped, "bare SHA-256 hash wrapped in bcrypt (verifies and is re-hashed at login)"
    return UNUSABLE, "password hash in an unknown format: the user must have the password reset"


def role_name(value: str | None, default: str = "member") -> str:
    """A seed role (`Super Admin`, `Approver`, `Viewer`...) as a labkeeper role."""
    if not value:
        return default
    name = re.sub(r"[\s_-]+", "", value.strip().lower())
    if name in ROLES:
        return name
    return {"owner": "superadmin", "root": "superadmin", "user": "member"}.get(name, default)


def user(session: Session, username: str) -> User | None:
    """A user by username (ignoring case, as sign-in does)."""
    return auth_repo.user_by_username(session, username)


def email_free(session: Session, email: str | None) -> bool:
    """Whether no user has this email yet."""
    if not email:
        return True
    found = session.scalar(select(User.id).where(func.lower(User.email) == email.lower()))
    return found is None


def discord_free(session: Session, discord_id: str | None) -> bool:
    """Whether no user has this Discord id yet."""
    if not discord_id:
        return True
    return session.scalar(select(User.id).where(User.discord_id == discord_id)) is None


def ensure_role(session: Session, user_id: int, role: str) -> RoleAssignment:
    """The user's role assignment, created with `role` when the user has none."""
    found = session.scalar(select(RoleAssignment).where(RoleAssignment.user_id == user_id))
    if found is None:
        found = RoleAssignment(user_id=user_id, role=role, status="active")
        session.add(found)
        session.flush()
    return found


def tag(session: Session, name: str) -> tuple[Tag, bool]:
    """The tag with this name, created if missing; True when it was created."""
    found = inventory_repo.tag_by_name(session, name)
    if found is not None:
        return found, False
    found = Tag(name=name)
    session.add(found)
    session.flush()
    return found, True


def color(value: str | None) -> str | None:
    """A `#rrggbb` colour, or None when the seed's value is not one."""
    value = (value or "").strip()
    return value if _COLOR.fullmatch(value) else None


_OPTICAL = ("optic", "roadm", "amplifier", "edfa", "transceiver", "otdr", "polatis", "wss", "fibre")
_COMPUTE = ("server", "compute", "host", "vm", "pc", "workstation")


def category(type_name: str) -> str:
    """A device type category guessed from a free-text type name."""
    lowered = type_name.lower()
    if any(word in lowered for word in _OPTICAL):
        return "optical"
    if any(word in lowered for word in _COMPUTE):
        return "compute"
    if "storage" in lowered or "nas" in lowered:
        return "storage"
    return "infra"


def device_type(session: Session, name: str, *, has_ports: bool = False) -> DeviceType:
    """The device type with this name, created (category guessed) if missing."""
    found = inventory_repo.device_type_by_name(session, name)
    if found is None:
        found = DeviceType(name=name, category=category(name), has_ports=has_ports)
        session.add(found)
        session.flush()
    return found


def device(session: Session, name: str) -> Device | None:
    """A device by name (ignoring case, as labkeeper's names are unique)."""
    return inventory_repo.device_by_name(session, name)


def port_owner(
    session: Session, switch: str, in_port: int | None, out_port: int | None
) -> str | None:
    """The name of a device already on one of these switch ports, if any."""
    clauses = []
    if in_port is not None:
        clauses.append(Device.switch_in_port == in_port)
    if out_port is not None:
        clauses.append(Device.switch_out_port == out_port)
    if not clauses:
        return None
    return session.scalar(
        select(Device.name).where(Device.switch_name == switch, or_(*clauses)).limit(1)
    )


_STATUS_WORDS = {
    "active": "available",
    "online": "available",
    "up": "available",
    "free": "available",
    "in use": "available",
    "booked": "available",
    "down": "offline",
    "decommissioned": "retired",
    "disabled": "unavailable",
    "broken": "unavailable",
}


def device_status(value: str | None) -> tuple[str, bool]:
    """A seed device status normalised to labkeeper's; False when it had to be guessed."""
    word = (value or "").strip().lower()
    if not word:
        return "available", True
    if word in DEVICE_STATUSES:
        return word, True
    if word in _STATUS_WORDS:
        return _STATUS_WORDS[word], True
    if "maint" in word:
        return "maintenance", True
    return "available", False


def sha256(text: str) -> str:
    """SHA-256 hex digest of a text."""
    return hashlib.sha256(text.encode()).hexdigest()


# -- import steps both seed schemas have ---------------------------------------------------


def import_settings(
    run: Run,
    source: Source,
    table: str,
    *,
    unknown: str,
    columns: Callable[[dict[str, Any]], dict[str, Any]] = lambda row: {},
) -> None:
    """Settings by key: only keys labkeeper knows (else skipped with the reason `unknown`), with
    valid values; a key labkeeper already has keeps labkeeper's value. `columns` gives the
    source-specific columns of a new setting (who updated it)."""
    session = run.session
    settings_service.changed(session)
    for row in run.each(source, table):
        key = clean(row.get("key")) or ""
        definition = REGISTRY.get(key)
        if definition is None:
            run.skip(table, key, unknown)
            continue
        try:
            value = definition.validate(js(row.get("value")))
        except ValidationError as exc:
            run.skip(table, key, f"value not valid: {exc.errors()[0]['msg']}")
            continue
        stored = session.scalar(select(Setting).where(Setting.key == key))
        if stored is not None:
            if stored.value != value:
                run.note(table, key, "labkeeper already has a value; kept labkeeper's")
            run.existing(table)
            continue
        run.add(
            table,
            Setting(
                key=key,
                value=value,
                category=definition.category,
                is_sensitive=definition.sensitive,
                updated_at=dt(row.get("updated_at")) or utcnow(),
                **columns(row),
            ),
        )


AUDIT_KEY = ("created_at", "action", "entity_type", "entity_id", "actor_username")
"""The columns that recognise an audit row already in labkeeper."""


def import_audit_log(
    run: Run,
    source: Source,
    table: str,
    *,
    action: str,
    entity: str,
    missing: str,
    columns: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Audit rows, recognised by time, action, entity and actor name (`AUDIT_KEY`).

    `action` and `entity` name the source's action and entity-type columns (a row without
    either is skipped with the reason `missing`); `columns` maps a source row to the other
    `AuditLog` columns, as they are stored.
    """
    session = run.session
    seen = {tuple(r) for r in session.execute(select(*(getattr(AuditLog, c) for c in AUDIT_KEY)))}
    for row in run.each(source, table):
        action_name, entity_type = clean(row.get(action)), clean(row.get(entity))
        if not action_name or not entity_type:
            run.skip(table, f"id {row['id']}", missing)
            continue
        values = {**columns(row), "action": action_name[:100], "entity_type": entity_type[:50]}
        key = tuple(values[c] for c in AUDIT_KEY)
        if key in seen:
            run.existing(table)
            continue
        seen.add(key)
        run.add(table, AuditLog(**values), flush=False)
