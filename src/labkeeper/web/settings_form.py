"""The settings page's fields: each registry entry turned into a typed form control.

The registry's types decide the control: a checkbox for bool, a number for int and float (with the
bounds of its constraints), a select for Literal, a password box for sensitive values (write-only:
the page only says whether one is set), text otherwise.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo
from starlette.datastructures import FormData

from labkeeper.admin.registry import REGISTRY, SettingDef
from labkeeper.web.render import humanize

# The order and wording of the categories on the page.
CATEGORIES: dict[str, tuple[str, str]] = {
    "general": ("General", "How the lab is called and which time zone its days follow."),
    "booking": ("Booking rules", "Limits every booking request is checked against."),
    "approval": ("Approval", "Which bookings wait for an approver."),
    "security": ("Security", "Passwords, sign-in lockout and the lifetime of sessions and tokens."),
    "notifications": ("Notifications", "Discord webhooks and the mail server for notices."),
    "backup": ("Configuration backups", "How configurations are collected and how long kept."),
    "jobs": ("Background jobs", "Housekeeping of job logs."),
    "health": ("Device health", "How devices are probed for reachability."),
}

# Values a form field of this kind sends when it is left untouched but means "keep".
KEEP = object()


@dataclass
class SettingField:
    """One setting as a form control."""

    key: str
    label: str
    description: str
    kind: str  # checkbox | number | select | text | secret
    value: Any = None
    default: Any = None
    is_default: bool = True
    is_set: bool = False  # sensitive values: whether one is stored
    nullable: bool = False
    options: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    step: str = "1"

    @property
    def dom_id(self) -> str:
        """An id usable in HTML."""
        return "setting-" + self.key.replace(".", "-")


def _shape(tp: Any) -> tuple[Any, list[Any], bool]:
    """The base type under Annotated/Optional, its constraint metadata, and whether None is ok."""
    metadata: list[Any] = []
    nullable = False
    for _ in range(4):
        if get_origin(tp) is Annotated:
            args = get_args(tp)
            tp, metadata = args[0], metadata + list(args[1:])
            continue
        if get_origin(tp) in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            nullable = nullable or len(members) < len(get_args(tp))
            if len(members) == 1:
                tp = members[0]
                continue
        break
    flat: list[Any] = []
    for item in metadata:
        flat.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return tp, flat, nullable


def make_field(definition: SettingDef, row: dict[str, Any]) -> SettingField:
    """The form control of one setting, given its row from `admin.service.get_all`."""
    base, metadata, nullable = _shape(definition.type)
    out = SettingField(
        key=definition.key,
        label=humanize(definition.key.split(".", 1)[1]),
        description=definition.description,
        kind="text",
        value=row["value"],
        default=row["default"],
        is_default=row["is_default"],
        nullable=nullable,
    )
    if definition.sensitive:
        out.kind = "secret"
        out.is_set = row["value"] not in (None, "")
        out.value = None
        return out
    if base is bool:
        out.kind = "checkbox"
    elif base in (int, float):
        out.kind = "number"
        out.step = "1" if base is int else "any"
        for item in metadata:
            if isinstance(item, annotated_types.Ge):
                out.minimum = float(item.ge)  # type: ignore[arg-type]
            elif isinstance(item, annotated_types.Gt) and base is int:
                out.minimum = float(item.gt) + 1  # type: ignore[arg-type]
            elif isinstance(item, annotated_types.Le):
                out.maximum = float(item.le)  # type: ignore[arg-type]
    elif get_origin(base) is Literal:
        out.kind = "select"
        out.options = [str(o) for o in get_args(base)]
    return out


def groups(rows: list[dict[str, Any]]) -> list[tuple[str, str, str, list[SettingField]]]:
    """(category, title, blurb, fields) in page order."""
    by_key = {r["key"]: r for r in rows}
    grouped: dict[str, list[SettingField]] = {}
    for key, definition in REGISTRY.items():
        if key in by_key:
            grouped.setdefault(definition.category, []).append(make_field(definition, by_key[key]))
    order = list(CATEGORIES) + sorted(set(grouped) - set(CATEGORIES))
    out = []
    for category in order:
        if category in grouped:
            title, blurb = CATEGORIES.get(category, (humanize(category), ""))
            out.append((category, title, blurb, grouped[category]))
    return out


def submitted(form: FormData, fields: list[SettingField]) -> dict[str, Any]:
    """key -> the value the form asks for (KEEP when a secret box was left empty)."""
    wanted: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f.key)
        value = raw.strip() if isinstance(raw, str) else ""
        if f.kind == "checkbox":
            wanted[f.key] = raw is not None
        elif f.kind == "secret":
            if form.get(f"clear:{f.key}") is not None:
                wanted[f.key] = None
            else:
                wanted[f.key] = value if value else KEEP
        elif value == "" and f.nullable:
            wanted[f.key] = None
        else:
            wanted[f.key] = value
    return wanted
