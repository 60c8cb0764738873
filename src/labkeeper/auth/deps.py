"""Who is asking: bearer tokens and session cookies resolved to a Principal; route permissions.

Every route declares its permission with `require(...)` (a test walks all routes to be sure).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from labkeeper.auth import repository
from labkeeper.auth.models import ApiToken, UserSession
from labkeeper.auth.permissions import AUTHENTICATED, PERMISSIONS, PUBLIC, effective_permissions
from labkeeper.core.audit import Actor
from labkeeper.core.db import SAFE_METHODS, Database, DbSession, after_commit
from labkeeper.core.errors import CsrfFailed, PermissionDenied, Unauthenticated
from labkeeper.core.security import constant_eq, sign, token_hash
from labkeeper.core.time import utcnow

log = logging.getLogger(__name__)

COOKIE_NAME = "labkeeper_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_PREFIX = "lks"
TOKEN_PREFIX = "lkt"  # noqa: S105 (a prefix, not a secret)
# Write "last used" at most this often, so reads do not turn into writes.
TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class Principal(Actor):
    """An authenticated user as seen by one request."""

    permissions: frozenset[str] = frozenset()
    status: str = "active"
    approval_limits: dict[str, Any] | None = None
    session_id: int | None = None
    token_id: int | None = None
    via: str = "token"  # token | session | cookie
    csrf_token: str | None = field(default=None, repr=False)

    def can(self, permission: str) -> bool:
        """Whether this principal holds a permission."""
        return permission in self.permissions

    @property
    def is_admin(self) -> bool:
        """Admins and superadmins."""
        return self.role in ("admin", "superadmin")


def cookie_value(token: str) -> str:
    """The cookie form of a session token: the token and its signature."""
    return f"{token}.{sign(token)}"


def _token_from_cookie(raw: str) -> str | None:
    token, _, signature = raw.rpartition(".")
    if token and constant_eq(signature, sign(token)):
        return token
    return None


def _principal(
    request: Request, row: Any, *, scopes: list[str] | None = None, **extra: Any
) -> Principal:
    role_name = row.role or "viewer"
    status = row.role_status or "active"
    return Principal(
        user_id=row.id,
        username=row.username,
        role=role_name,
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        permissions=effective_permissions(role_name, status, row.permission_overrides, scopes),
        status=status,
        approval_limits=row.approval_limits,
        **extra,
    )


def _touch(
    request: Request,
    session: Session,
    model: type[UserSession] | type[ApiToken],
    row_id: int,
    column: str,
) -> None:
    # A short write of its own once the request's transaction is over: the request may be
    # read-only, and on SQLite a second writer inside a write request would wait for itself.
    db: Database = request.app.state.db

    def write() -> None:
        try:
            with db.scope() as s:
                s.execute(update(model).where(model.id == row_id).values({column: utcnow()}))
        except SQLAlchemyError:
            log.debug("could not record last use of %s %s", model.__tablename__, row_id)

    after_commit(session, write)


def _live(row: Any, now: datetime) -> bool:
    return bool(
        row.revoked_at is None
        and (row.expires_at is None or row.expires_at > now)
        and row.is_active
    )


def authenticate(request: Request, session: Session) -> Principal | None:
    """The principal behind a request's bearer token or session cookie, or None."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization", "")
    token: str | None = None
    via = "token"
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        token = value.strip()
    elif COOKIE_NAME in request.cookies:
        token = _token_from_cookie(request.cookies[COOKIE_NAME])
        via = "cookie"
        if token is None:
            return None
    if token is None:
        return None
    now = utcnow()
    digest = token_hash(token)
    if token.startswith(SESSION_PREFIX + "_"):
        model: type[UserSession] | type[ApiToken] = UserSession
        row = repository.principal_by_session_hash(session, digest)
    elif token.startswith(TOKEN_PREFIX + "_"):
        model = ApiToken
        row = repository.principal_by_token_hash(session, digest)
    else:
        row = None
    if row is None or not _live(row, now):
        if via == "cookie":
            return None  # a stale cookie is just "signed out"
        raise Unauthenticated("the token is invalid, expired or revoked")
    # The user's columns as a user list has them: /auth/me answers from these.
    request.state.auth_user = row
    if model is UserSession:
        principal = _principal(
            request,
            row,
            session_id=row.credential_id,
            via="session" if via == "token" else "cookie",
            csrf_token=row.extra,
        )
    else:
        principal = _principal(request, row, scopes=row.extra, token_id=row.credential_id)
    if row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY:
        column = "last_seen_at" if model is UserSession else "last_used_at"
        _touch(request, session, model, row.credential_id, column)
    request.state.principal = principal
    return principal


def _check_csrf(request: Request, principal: Principal) -> None:
    # Only cookie-authenticated writes can be forged by another site; bearer tokens cannot.
    if principal.via != "cookie" or request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER) or getattr(request.state, "form_csrf", None)
    if not sent or not principal.csrf_token or not constant_eq(sent, principal.csrf_token):
        raise CsrfFailed("missing or wrong CSRF token; reload the page and try again")


def require(permission: str) -> Callable[..., Any]:
    """A dependency that authenticates the request and checks one permission.

    `PUBLIC` routes get the principal or None; `AUTHENTICATED` routes need any signed-in user.
    """
    if permission not in PERMISSIONS and permission not in (PUBLIC, AUTHENTICATED):
        raise ValueError(f"unknown permission {permission!r}")

    async def dependency(request: Request, session: DbSession) -> Any:
        principal = authenticate(request, session)
        if permission == PUBLIC:
            return principal
        if principal is None:
            raise Unauthenticated("sign in or send 'Authorization: Bearer <token>'")
        _check_csrf(request, principal)
        if principal.status != "active":
            raise PermissionDenied(f"your account's role is {principal.status}")
        if permission != AUTHENTICATED and not principal.can(permission):
            raise PermissionDenied(
                f"this needs the '{permission}' permission, which the {principal.role} role "
                "does not have",
                details={"permission": permission},
            )
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    return dependency


def route_permission(dependant: Any) -> str | None:
    """The permission a route declared through `require`, found in its dependency tree."""
    for dep in dependant.dependencies:
        perm = getattr(dep.call, "permission", None)
        if perm:
            return str(perm)
        found = route_permission(dep)
        if found:
            return found
    return None
