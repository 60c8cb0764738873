"""Roles and permission keys. Routes declare one key each (or PUBLIC / AUTHENTICATED)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PUBLIC = "public"
AUTHENTICATED = "authenticated"

PERMISSIONS: dict[str, str] = {
    "bookings:read": "See all bookings, not only one's own",
    "bookings:write": "Create and change one's own bookings",
    "bookings:export": "Export bookings as CSV",
    "bookings:approve": "Approve or decline bookings within one's approval limits",
    "devices:read": "See devices, types, sites, tags and availability",
    "devices:write": "Create and change devices, maintenance and ownership",
    "users:read": "See all users",
    "users:write": "Create, change and deactivate users, roles and invitations",
    "logs:read": "Read the audit log",
    "logs:export": "Export the audit log as CSV",
    "settings:write": "Change settings",
    "topologies:write": "Draw, save and book topologies",
    "topologies:review": "Approve or reject submitted topologies",
    "credentials:read": "See credentials (never their secrets)",
    "credentials:write": "Create, change and delete credentials",
    "backups:read": "Read stored configurations and diffs",
    "backups:write": "Run backups and manage backup settings",
    "jobs:read": "See scheduled jobs and job runs",
    "jobs:write": "Create, change, run and cancel jobs",
}

ROLES = ("viewer", "member", "approver", "admin", "superadmin")

_VIEWER = {
    "devices:read",
    "backups:read",
    "jobs:read",
}
_MEMBER = _VIEWER | {"bookings:write", "topologies:write"}
_APPROVER = _MEMBER | {
    "bookings:read",
    "bookings:export",
    "bookings:approve",
    "topologies:review",
    "users:read",
    "logs:read",
}
_ADMIN = _APPROVER | {
    "devices:write",
    "users:write",
    "logs:export",
    "settings:write",
    "credentials:read",
    "credentials:write",
    "backups:write",
    "jobs:write",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset(_VIEWER),
    "member": frozenset(_MEMBER),
    "approver": frozenset(_APPROVER),
    "admin": frozenset(_ADMIN),
    "superadmin": frozenset(PERMISSIONS),
}

ROLE_RANK = {role: i for i, role in enumerate(ROLES)}


def effective_permissions(
    role: str,
    status: str,
    overrides: dict[str, Any] | None,
    scopes: Iterable[str] | None = None,
) -> frozenset[str]:
    """The permissions a principal holds: role defaults, per-assignment overrides, token scopes."""
    if status != "active":
        return frozenset()
    perms = set(ROLE_PERMISSIONS.get(role, frozenset()))
    for key, allowed in (overrides or {}).items():
        if key not in PERMISSIONS:
            continue
        if allowed:
            perms.add(key)
        else:
            perms.discard(key)
    if scopes is not None:
        perms &= set(scopes)
    return frozenset(perms)
