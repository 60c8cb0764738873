"""Request and response bodies of accounts, sign-in, tokens and invitations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import EmailStr, Field, StringConstraints, field_validator

from labkeeper.auth.permissions import PERMISSIONS
from labkeeper.core.schemas import Body, Read

Username = Annotated[
    str, StringConstraints(min_length=2, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=False)]
Role = Literal["viewer", "member", "approver", "admin", "superadmin"]
RoleStatus = Literal["active", "inactive", "suspended"]
DiscordId = Annotated[str, StringConstraints(pattern=r"^[0-9]{5,32}$")]


class LoginRequest(Body):
    username: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    password: Password


class LoginResponse(Read):
    access_token: str
    token_type: str = "bearer"  # noqa: S105
    expires_at: datetime
    csrf_token: str


class ApprovalLimits(Body):
    max_hours: int | None = Field(default=None, ge=1)
    max_devices: int | None = Field(default=None, ge=1)


def _known_permissions(value: dict[str, bool] | None) -> dict[str, bool] | None:
    for key in value or {}:
        if key not in PERMISSIONS:
            raise ValueError(f"unknown permission {key!r}")
    return value


class UserCreate(Body):
    username: Username
    password: Password
    role: Role = "member"
    email: EmailStr | None = None
    full_name: Annotated[str, StringConstraints(max_length=100)] | None = None
    discord_id: DiscordId | None = None


class UserUpdate(Body):
    """What an admin may change on a user."""

    email: EmailStr | None = None
    full_name: Annotated[str, StringConstraints(max_length=100)] | None = None
    discord_id: DiscordId | None = None
    is_active: bool | None = None
    role: Role | None = None
    role_status: RoleStatus | None = None
    permissions: dict[str, bool] | None = None
    approval_limits: ApprovalLimits | None = None

    _perms = field_validator("permissions")(_known_permissions)


class ProfileUpdate(Body):
    """What users may change about themselves."""

    email: EmailStr | None = None
    full_name: Annotated[str, StringConstraints(max_length=100)] | None = None
    discord_id: DiscordId | None = None


class PasswordChange(Body):
    current_password: Password
    new_password: Password


class UserRead(Read):
    id: int
    username: str
    email: str | None
    full_name: str | None
    discord_id: str | None
    is_active: bool
    role: str
    role_status: str
    permissions: list[str] = []
    permission_overrides: dict[str, Any] | None = None
    approval_limits: dict[str, Any] | None = None
    created_at: datetime
    last_login_at: datetime | None
    locked_until: datetime | None = None


class TokenCreate(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    scopes: list[str] | None = None
    expires_days: int | None = Field(default=90, ge=1)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str] | None) -> list[str] | None:
        for key in value or []:
            if key not in PERMISSIONS:
                raise ValueError(f"unknown scope {key!r}")
        return value


class TokenRead(Read):
    id: int
    name: str
    prefix: str
    scopes: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str


class InvitationCreate(Body):
    email: EmailStr
    role: Role = "member"
    handle: Username | None = None


class InvitationRead(Read):
    id: int
    email: str
    handle: str | None
    role: str
    invited_by: int | None
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class InvitationCreated(InvitationRead):
    token: str
    accept_url: str


class InvitationAccept(Body):
    token: Annotated[str, StringConstraints(min_length=10, max_length=200)]
    username: Username
    password: Password
    email: EmailStr | None = None
