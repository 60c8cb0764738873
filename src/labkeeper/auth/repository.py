"""Queries of the auth domain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, bindparam, func, or_, select
from sqlalchemy.orm import Session

from labkeeper.auth.models import ApiToken, Invitation, RoleAssignment, User, UserSession
from labkeeper.core.db import read


def user_by_id(session: Session, user_id: int) -> User | None:
    """A user by id."""
    return session.get(User, user_id)


def user_by_login(session: Session, login: str) -> User | None:
    """A user by username (case-insensitive) or email."""
    login = login.strip()
    return session.scalar(
        select(User).where(
            or_(func.lower(User.username) == login.lower(), func.lower(User.email) == login.lower())
        )
    )


def user_by_username(session: Session, username: str) -> User | None:
    """A user by exact username, ignoring case."""
    return session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def users_by_usernames(session: Session, usernames: list[str]) -> dict[str, User]:
    """Users for a list of usernames, keyed by lower-case username."""
    if not usernames:
        return {}
    lowered = [u.lower() for u in usernames]
    rows = session.scalars(select(User).where(func.lower(User.username).in_(lowered)))
    return {u.username.lower(): u for u in rows}


def email_taken(session: Session, email: str, *, except_id: int | None = None) -> bool:
    """Whether another user already has this email."""
    stmt = select(User.id).where(func.lower(User.email) == email.lower())
    if except_id is not None:
        stmt = stmt.where(User.id != except_id)
    return session.scalar(stmt) is not None


def role_of(session: Session, user_id: int) -> RoleAssignment | None:
    """The role assignment of a user."""
    return session.scalar(select(RoleAssignment).where(RoleAssignment.user_id == user_id))


# The columns a user list shows, named as the API names them.
_USER_LIST_COLUMNS = (
    User.id,
    User.username,
    User.email,
    User.full_name,
    User.discord_id,
    User.is_active,
    User.created_at,
    User.last_login_at,
    User.locked_until,
    RoleAssignment.role,
    RoleAssignment.status.label("role_status"),
    RoleAssignment.permissions.label("permission_overrides"),
    RoleAssignment.approval_limits,
)

# A principal row: the credential's columns, then its user's as a user list shows them.
CREDENTIAL_COLUMNS = 5


def _principal_query(model: type[UserSession] | type[ApiToken], last_used: Any, extra: Any) -> Any:
    return (
        select(
            model.id.label("credential_id"),
            model.revoked_at,
            model.expires_at,
            last_used.label("last_used_at"),
            extra.label("extra"),
            *_USER_LIST_COLUMNS,
        )
        .join(User, User.id == model.user_id)
        .outerjoin(RoleAssignment, RoleAssignment.user_id == User.id)
        .where(model.token_hash == bindparam("digest"))
    )


# Built once, and plain rows rather than ORM objects: these run on every authenticated
# request, and building a select, or three ORM objects, costs more than the indexed lookup.
_SESSION_PRINCIPAL = _principal_query(UserSession, UserSession.last_seen_at, UserSession.csrf_token)
_TOKEN_PRINCIPAL = _principal_query(ApiToken, ApiToken.last_used_at, ApiToken.scopes)


def principal_by_session_hash(session: Session, digest: str) -> Row[Any] | None:
    """A sign-in (id, revoked_at, expires_at, last_used_at, extra: its CSRF token) followed by
    its user's columns as `user_rows_query` has them; one query."""
    return read(session, _SESSION_PRINCIPAL, {"digest": digest}).first()


def principal_by_token_hash(session: Session, digest: str) -> Row[Any] | None:
    """An API token (id, revoked_at, expires_at, last_used_at, extra: its scopes) followed by
    its user's columns as `user_rows_query` has them; one query."""
    return read(session, _TOKEN_PRINCIPAL, {"digest": digest}).first()


def user_rows_query(
    *,
    q: str | None = None,
    role: str | None = None,
    is_active: bool | None = None,
    status: str | None = None,
) -> Select[Any]:
    """The columns a user list shows (plain rows, no ORM objects: lists stay cheap)."""
    return _user_filters(_USER_LIST, q=q, role=role, is_active=is_active, status=status)


def users_query(
    *,
    q: str | None = None,
    role: str | None = None,
    is_active: bool | None = None,
    status: str | None = None,
) -> Select[User, RoleAssignment]:
    """Users with their role assignment, filtered, ordered by username."""
    return _user_filters(_USERS, q=q, role=role, is_active=is_active, status=status)


_USERS = (
    select(User, RoleAssignment)
    .outerjoin(RoleAssignment, RoleAssignment.user_id == User.id)
    .order_by(User.username)
)
_USER_LIST = _USERS.with_only_columns(*_USER_LIST_COLUMNS)


def _user_filters(
    stmt: Any, *, q: str | None, role: str | None, is_active: bool | None, status: str | None
) -> Any:
    if q:
        like = f"%{q.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(User.username).like(like),
                func.lower(User.email).like(like),
                func.lower(User.full_name).like(like),
            )
        )
    if role:
        stmt = stmt.where(RoleAssignment.role == role)
    if status:
        stmt = stmt.where(RoleAssignment.status == status)
    if is_active is not None:
        stmt = stmt.where(User.is_active == is_active)
    return stmt


def tokens_of(session: Session, user_id: int) -> list[ApiToken]:
    """A user's API tokens, newest first."""
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
        )
    )


def invitation_by_hash(session: Session, digest: str) -> Invitation | None:
    """An invitation by its token's hash."""
    return session.scalar(select(Invitation).where(Invitation.token_hash == digest))


def invitations_query(*, pending_only: bool = False) -> Select[Any]:
    """Invitations, newest first."""
    stmt = select(Invitation).order_by(Invitation.id.desc())
    if pending_only:
        stmt = stmt.where(Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
    return stmt


def live_sessions(session: Session, user_id: int) -> list[UserSession]:
    """A user's sign-ins that are not revoked."""
    return list(
        session.scalars(
            select(UserSession).where(
                UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
            )
        )
    )
