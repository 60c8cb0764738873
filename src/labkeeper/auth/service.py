"""Accounts, sign-in, tokens, roles and invitations: the rules live here."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from labkeeper.admin import service as settings
from labkeeper.auth import repository
from labkeeper.auth.deps import SESSION_PREFIX, TOKEN_PREFIX, Principal
from labkeeper.auth.models import ApiToken, Invitation, RoleAssignment, User, UserSession
from labkeeper.auth.permissions import ROLE_RANK, effective_permissions
from labkeeper.auth.schemas import (
    InvitationAccept,
    InvitationCreate,
    PasswordChange,
    ProfileUpdate,
    TokenCreate,
    UserCreate,
    UserUpdate,
)
from labkeeper.core import audit
from labkeeper.core.audit import Actor
from labkeeper.core.db import release_locks
from labkeeper.core.errors import (
    AccountLocked,
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    InvalidCredentials,
    PermissionDenied,
    not_found,
)
from labkeeper.core.security import (
    dummy_hash,
    hash_password,
    needs_rehash,
    new_token,
    token_hash,
    verify_password,
)
from labkeeper.core.time import utcnow


def check_password_policy(session: Session, password: str, *, username: str = "") -> None:
    """Refuse a password that breaks the policy in settings (422 naming the field)."""
    min_len = settings.get(session, "security.password_min_length")
    if len(password) < min_len:
        raise Invalid(f"the password must be at least {min_len} characters long", field="password")
    if settings.get(session, "security.password_require_mixed") and (
        not re.search(r"[A-Za-z]", password) or not re.search(r"[^A-Za-z]", password)
    ):
        raise Invalid(
            "the password needs letters and at least one digit or symbol", field="password"
        )
    if username and username.lower() in password.lower():
        raise Invalid("the password must not contain the username", field="password")


def _grantable(actor: Actor, role: str) -> None:
    # Nobody hands out a role above their own; only a superadmin makes superadmins.
    if actor.role == "system":
        return
    if role == "superadmin" and actor.role != "superadmin":
        raise PermissionDenied("only a superadmin may grant the superadmin role")
    if ROLE_RANK[role] > ROLE_RANK.get(actor.role or "", -1):
        raise PermissionDenied(f"you cannot grant the {role} role, which is above your own")


def _ensure_unique(
    session: Session, *, username: str | None, email: str | None, except_id: int | None = None
) -> None:
    if username is not None:
        existing = repository.user_by_username(session, username)
        if existing is not None and existing.id != except_id:
            raise AlreadyExists(
                f"the username {username!r} is taken", details={"field": "username"}
            )
    if email and repository.email_taken(session, email, except_id=except_id):
        raise AlreadyExists(f"the email {email!r} is already in use", details={"field": "email"})


def create_user(
    session: Session, *, data: UserCreate, actor: Actor, check_grant: bool = True
) -> User:
    """Create a user with a role; username and email must be free."""
    if check_grant:
        _grantable(actor, data.role)
    _ensure_unique(session, username=data.username, email=data.email)
    check_password_policy(session, data.password, username=data.username)
    release_locks(session)  # argon2 takes a while: hold no lock meanwhile
    password_hash = hash_password(data.password)  # a name taken meanwhile: the unique index, 409
    user = User(
        username=data.username,
        email=data.email,
        full_name=data.full_name,
        discord_id=data.discord_id,
        password_hash=password_hash,
        password_changed_at=utcnow(),
    )
    session.add(user)
    session.flush()
    session.add(RoleAssignment(user_id=user.id, role=data.role, assigned_by=actor.user_id))
    session.flush()
    audit.record(
        session,
        actor,
        "users.create",
        "user",
        user.id,
        payload={"username": user.username, "role": data.role, "email": data.email},
    )
    return user


def user_view(user: User, role: RoleAssignment | None) -> dict[str, Any]:
    """A user as the API shows it, with role and effective permissions."""
    role_name = role.role if role else "viewer"
    status = role.status if role else "active"
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "full_name": user.full_name,
        "discord_id": user.discord_id,
        "is_active": user.is_active,
        "role": role_name,
        "role_status": status,
        "permissions": sorted(
            effective_permissions(role_name, status, role.permissions if role else None)
        ),
        "permission_overrides": role.permissions if role else None,
        "approval_limits": role.approval_limits if role else None,
        "created_at": user.created_at,
        "last_login_at": user.last_login_at,
        "locked_until": user.locked_until,
    }


@lru_cache(maxsize=1024)
def _permission_list(role: str, status: str, overrides: tuple[tuple[str, bool], ...]) -> list[str]:
    return sorted(effective_permissions(role, status, dict(overrides)))


def user_rows_view(rows: Sequence[Any], *, skip: int = 0) -> list[dict[str, Any]]:
    """Rows of `repository.user_rows_query` as the API shows users (its columns are named as
    the API names them, so each row zipped with the names is most of the answer). `skip`
    leading columns of each row are not the user's (a principal row's credential)."""
    if not rows:
        return []
    names = rows[0]._fields[skip:]
    views = []
    for row in rows:
        view = dict(zip(names, row[skip:], strict=True))
        role = view["role"] = view["role"] or "viewer"
        status = view["role_status"] = view["role_status"] or "active"
        overrides = view["permission_overrides"]
        view["permissions"] = _permission_list(
            role, status, tuple(sorted(overrides.items())) if overrides else ()
        )
        views.append(view)
    return views


def get_user(session: Session, user_id: int) -> tuple[User, RoleAssignment | None]:
    """A user and their role; 404 when unknown."""
    user = repository.user_by_id(session, user_id)
    if user is None:
        raise not_found("user", user_id)
    return user, repository.role_of(session, user_id)


def login(
    session: Session, *, username: str, password: str, ip: str | None, user_agent: str | None
) -> tuple[UserSession, str]:
    """Check a password and open a sign-in; failures are counted and lock the account."""
    now = utcnow()
    user = repository.user_by_login(session, username)
    actor = Actor(
        user_id=user.id if user else None, username=username[:50], ip=ip, user_agent=user_agent
    )
    if user is None:
        release_locks(session)
        verify_password(dummy_hash(), password)  # same cost as a real check
        audit.record(
            session, actor, "auth.login", "user", None, outcome="failure", message="unknown user"
        )
        raise InvalidCredentials("wrong username or password")
    if user.locked_until and user.locked_until > now:
        audit.record(
            session,
            actor,
            "auth.login",
            "user",
            user.id,
            outcome="failure",
            message="account locked",
        )
        raise AccountLocked(
            f"too many failed sign-ins; the account unlocks at {user.locked_until.isoformat()}",
            details={"locked_until": user.locked_until.isoformat()},
        )
    user_id, stored = user.id, user.password_hash
    # argon2 takes a while: check with no lock held, then read the user again.
    release_locks(session)
    matches = verify_password(stored, password)
    new_hash = hash_password(password) if matches and needs_rehash(stored) else None
    user = session.get(User, user_id, populate_existing=True)
    if user is None:
        raise InvalidCredentials("wrong username or password")
    if user.password_hash != stored:  # changed meanwhile: the new one decides
        matches, new_hash = verify_password(user.password_hash, password), None
    if not matches:
        threshold = settings.get(session, "security.lockout_threshold")
        user.failed_logins = (user.failed_logins or 0) + 1
        message = "wrong password"
        if user.failed_logins >= threshold:
            user.locked_until = now + timedelta(
                minutes=settings.get(session, "security.lockout_minutes")
            )
            user.failed_logins = 0
            message = "wrong password; account locked"
        session.flush()
        audit.record(
            session, actor, "auth.login", "user", user.id, outcome="failure", message=message
        )
        if user.locked_until and user.locked_until > now:
            raise AccountLocked(
                f"too many failed sign-ins; the account unlocks at {user.locked_until.isoformat()}",
                details={"locked_until": user.locked_until.isoformat()},
            )
        raise InvalidCredentials("wrong username or password")
    if not user.is_active:
        audit.record(
            session,
            actor,
            "auth.login",
            "user",
            user.id,
            outcome="failure",
            message="account deactivated",
        )
        raise InvalidCredentials("this account is deactivated; ask an administrator")
    if new_hash is not None:
        user.password_hash = new_hash
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    token = new_token(SESSION_PREFIX)
    hours = settings.get(session, "security.session_hours")
    sign_in = UserSession(
        user_id=user.id,
        token_hash=token_hash(token),
        csrf_token=secrets.token_urlsafe(24),
        expires_at=now + timedelta(hours=hours),
        last_seen_at=now,
        ip=ip,
        user_agent=(user_agent or "")[:255] or None,
    )
    session.add(sign_in)
    session.flush()
    role = repository.role_of(session, user.id)
    audit.record(
        session,
        Actor(user.id, user.username, role.role if role else None, ip, user_agent),
        "auth.login",
        "user",
        user.id,
    )
    return sign_in, token


def logout(session: Session, *, principal: Principal) -> None:
    """End the current sign-in (or, for an API token, revoke nothing: tokens are revoked by id)."""
    if principal.session_id is not None:
        row = session.get(UserSession, principal.session_id)
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
    audit.record(session, principal, "auth.logout", "user", principal.user_id)


def logout_everywhere(session: Session, *, principal: Principal) -> int:
    """End every sign-in of the user; API tokens stay (they are revoked one by one)."""
    result = session.execute(
        update(UserSession)
        .where(UserSession.user_id == principal.user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    audit.record(
        session,
        principal,
        "auth.logout_all",
        "user",
        principal.user_id,
        payload={"sessions": count},
    )
    return count


def create_token(
    session: Session, *, principal: Principal | Actor, data: TokenCreate, user_id: int | None = None
) -> tuple[ApiToken, str]:
    """Create an API token (shown once) limited to the owner's permissions."""
    owner_id = user_id if user_id is not None else principal.user_id
    if owner_id is None:
        raise Invalid("a token needs an owner", field="user")
    max_days = settings.get(session, "security.token_max_days")
    if data.expires_days is not None and data.expires_days > max_days:
        raise Invalid(f"a token may live at most {max_days} days", field="expires_days")
    if data.scopes is not None and isinstance(principal, Principal):
        missing = sorted(set(data.scopes) - principal.permissions)
        if missing:
            raise PermissionDenied(
                "a token cannot hold permissions you do not have: " + ", ".join(missing),
                details={"scopes": missing},
            )
    token = new_token(TOKEN_PREFIX)
    row = ApiToken(
        user_id=owner_id,
        name=data.name,
        token_hash=token_hash(token),
        prefix=token[:10],
        scopes=data.scopes,
        expires_at=utcnow() + timedelta(days=data.expires_days) if data.expires_days else None,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        principal,
        "tokens.create",
        "api_token",
        row.id,
        payload={"name": data.name, "scopes": data.scopes, "user_id": owner_id},
    )
    return row, token


def revoke_token(session: Session, *, principal: Principal, token_id: int) -> ApiToken:
    """Revoke one of one's own tokens (admins: anyone's)."""
    row = session.get(ApiToken, token_id)
    if row is None or (row.user_id != principal.user_id and not principal.can("users:write")):
        raise not_found("API token", token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    audit.record(session, principal, "tokens.revoke", "api_token", row.id)
    return row


def update_profile(session: Session, *, principal: Principal, data: ProfileUpdate) -> User:
    """Change one's own email, name or Discord id."""
    user, _ = get_user(session, principal.user_id or 0)
    changes = data.model_dump(exclude_unset=True)
    if "email" in changes:
        _ensure_unique(session, username=None, email=changes["email"], except_id=user.id)
    for key, value in changes.items():
        setattr(user, key, value)
    session.flush()
    audit.record(session, principal, "users.update_profile", "user", user.id, payload=changes)
    return user


def change_password(session: Session, *, principal: Principal, data: PasswordChange) -> None:
    """Change one's own password; other sign-ins are ended."""
    user, _ = get_user(session, principal.user_id or 0)
    check_password_policy(session, data.new_password, username=user.username)
    stored = user.password_hash
    release_locks(session)  # argon2, twice: hold no lock meanwhile
    if not verify_password(stored, data.current_password):
        raise Invalid("the current password is wrong", field="current_password")
    new_hash = hash_password(data.new_password)
    user, _ = get_user(session, principal.user_id or 0)
    if user.password_hash != stored:
        raise Conflict(
            "your password was changed meanwhile; sign in again", code="password_changed"
        )
    user.password_hash = new_hash
    user.password_changed_at = utcnow()
    session.execute(
        update(UserSession)
        .where(
            UserSession.user_id == user.id,
            UserSession.revoked_at.is_(None),
            UserSession.id != (principal.session_id or 0),
        )
        .values(revoked_at=utcnow())
    )
    audit.record(session, principal, "users.change_password", "user", user.id)


def update_user(
    session: Session, *, user_id: int, data: UserUpdate, actor: Principal
) -> tuple[User, RoleAssignment]:
    """Admin changes to a user: profile, active flag, role, status, overrides, limits."""
    user, role = get_user(session, user_id)
    if role is None:
        role = RoleAssignment(user_id=user.id, role="viewer")
        session.add(role)
    changes = data.model_dump(exclude_unset=True)
    if user.id == actor.user_id and (
        changes.get("is_active") is False or "role" in changes or "role_status" in changes
    ):
        raise PermissionDenied("you cannot change your own role or deactivate yourself")
    # An admin may not change a superadmin; only superadmins touch admin accounts' roles.
    if role.role == "superadmin" and actor.role != "superadmin":
        raise PermissionDenied("only a superadmin may change a superadmin")
    if "role" in changes:
        _grantable(actor, changes["role"])
        role.role = changes["role"]
        role.assigned_by = actor.user_id
    if "role_status" in changes:
        role.status = changes["role_status"]
    if "permissions" in changes:
        role.permissions = changes["permissions"]
    if "approval_limits" in changes:
        role.approval_limits = (
            {k: v for k, v in changes["approval_limits"].items() if v is not None}
            if changes["approval_limits"]
            else None
        )
    if "email" in changes:
        _ensure_unique(session, username=None, email=changes["email"], except_id=user.id)
    for key in ("email", "full_name", "discord_id", "is_active"):
        if key in changes:
            setattr(user, key, changes[key])
    if changes.get("is_active") is False:
        session.execute(
            update(UserSession)
            .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    session.flush()
    audit.record(session, actor, "users.update", "user", user.id, payload=changes)
    return user, role


def unlock_user(session: Session, *, user_id: int, actor: Principal) -> User:
    """Clear a sign-in lockout."""
    user, _ = get_user(session, user_id)
    user.locked_until = None
    user.failed_logins = 0
    audit.record(session, actor, "users.unlock", "user", user.id)
    return user


def invite(session: Session, *, data: InvitationCreate, actor: Principal) -> tuple[Invitation, str]:
    """Invite someone by email with a role; the token is shown once and stored hashed."""
    _grantable(actor, data.role)
    if repository.email_taken(session, data.email):
        raise AlreadyExists(
            f"a user with the email {data.email!r} exists already", details={"field": "email"}
        )
    token = secrets.token_urlsafe(32)
    days = settings.get(session, "security.invitation_days")
    row = Invitation(
        email=data.email,
        handle=data.handle,
        role=data.role,
        invited_by=actor.user_id,
        token_hash=token_hash(token),
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "invitations.create",
        "invitation",
        row.id,
        payload={"email": data.email, "role": data.role},
    )
    return row, token


def revoke_invitation(session: Session, *, invitation_id: int, actor: Principal) -> Invitation:
    """Withdraw a pending invitation."""
    row = session.get(Invitation, invitation_id)
    if row is None:
        raise not_found("invitation", invitation_id)
    if row.accepted_at is not None:
        raise Gone("this invitation was accepted already")
    row.revoked_at = row.revoked_at or utcnow()
    audit.record(session, actor, "invitations.revoke", "invitation", row.id)
    return row


def accept_invitation(session: Session, *, data: InvitationAccept, ip: str | None) -> User:
    """Create the invited user with the invitation's role; an invitation works once."""
    row = repository.invitation_by_hash(session, token_hash(data.token))
    now = utcnow()
    if row is None:
        raise not_found("invitation", "with this token")
    if row.accepted_at is not None or row.revoked_at is not None:
        raise Gone("this invitation has been used or withdrawn")
    if row.expires_at <= now:
        raise Gone(f"this invitation expired at {row.expires_at.isoformat()}")
    inviter = Actor(user_id=row.invited_by, username="invitation", role="system", ip=ip)
    user = create_user(
        session,
        data=UserCreate(
            username=data.username,
            password=data.password,
            role=row.role,
            email=data.email or row.email,
        ),
        actor=inviter,
        check_grant=False,
    )
    row.accepted_at = now
    row.accepted_user_id = user.id
    audit.record(
        session,
        Actor(user.id, user.username, row.role, ip),
        "invitations.accept",
        "invitation",
        row.id,
    )
    return user


def lock_expired(user: User, now: datetime) -> bool:
    """Whether a user's lock has run out."""
    return user.locked_until is None or user.locked_until <= now
