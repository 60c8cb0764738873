"""The web pages: thin views that call the services and render templates (Jinja2 + htmx).

Every page declares its permission with `require(...)`, like the API. Browsers sign in with the
session cookie; forms carry the session's CSRF token in a `csrf_token` field, which `form_data`
hands to `require` before it runs. Browsers get pages for errors too: a redirect to the sign-in
page instead of a 401, and an error page instead of JSON (API clients still get JSON).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from collections.abc import Callable, Iterator
from datetime import date
from typing import Annotated, Any, cast
from urllib.parse import quote

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from labkeeper.admin import repository as admin_repository
from labkeeper.admin import service as admin_service
from labkeeper.admin.registry import REGISTRY
from labkeeper.auth import repository as auth_repository
from labkeeper.auth import service as auth_service
from labkeeper.auth.deps import COOKIE_NAME, Principal, cookie_value, require
from labkeeper.auth.permissions import ROLE_RANK, ROLES
from labkeeper.auth.router import _limiter as login_limiter  # one limiter for API and pages
from labkeeper.auth.schemas import (
    InvitationAccept,
    InvitationCreate,
    LoginRequest,
    PasswordChange,
    ProfileUpdate,
    TokenCreate,
    UserCreate,
    UserUpdate,
)
from labkeeper.core.db import Database
from labkeeper.core.errors import (
    AccountLocked,
    AppError,
    CsrfFailed,
    Gone,
    Invalid,
    InvalidCredentials,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.routing import APIRouter, blocking, include
from labkeeper.core.schemas import Id
from labkeeper.core.security import constant_eq, token_hash
from labkeeper.core.time import utcnow
from labkeeper.web import dashboard, settings_form
from labkeeper.web.deps import DB, Anyone, Filter, Form, Paging, SignedIn, client_ip, refused
from labkeeper.web.render import (
    FLASH_COOKIE,
    FORM_COOKIE,
    STATIC_DIR,
    day_end,
    day_start,
    error_fields,
    flash,
    form_token,
    page,
    query_string,
    redirect,
    safe_next,
    sentence,
    text,
    validation_errors,
)
from labkeeper.web.sections import find_sections

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

UsersReader = Annotated[Principal, Depends(require("users:read"))]
UsersWriter = Annotated[Principal, Depends(require("users:write"))]
LogsReader = Annotated[Principal, Depends(require("logs:read"))]
SettingsWriter = Annotated[Principal, Depends(require("settings:write"))]
InviteToken = Annotated[str, Path(min_length=10, max_length=200)]


def _form_token_ok(request: Request, form: FormData) -> bool:
    """The double-submit check of the forms shown before sign-in."""
    sent = text(form, "csrf_token", limit=200)
    kept = request.cookies.get(FORM_COOKIE, "")
    return bool(sent and kept) and constant_eq(sent, kept)


# -- sign-in, sign-out, invitations ----------------------------------------------------------


@router.get("/login")
def login_page(
    request: Request,
    session: DB,
    principal: Anyone,
    next_url: Annotated[str | None, Query(alias="next", max_length=2000)] = None,
    username: Annotated[str | None, Query(max_length=254)] = None,
) -> Response:
    """The sign-in form."""
    if principal is not None and principal.via == "cookie":
        return redirect(safe_next(next_url))
    return page(
        request,
        session,
        None,
        "login.html",
        next_url=safe_next(next_url),
        form_token=form_token(request),
        values={"username": username or ""},
    )


@router.post("/login")
@blocking  # argon2
def login_submit(request: Request, session: DB, form: Form, _: Anyone) -> Response:
    """Check the password, set the session cookie and go on to the page asked for."""
    next_url = safe_next(text(form, "next", limit=2000))
    raw_password = form.get("password")
    values = {"username": text(form, "username", limit=254)}
    errors: dict[str, str] = {}
    status = 422
    if not _form_token_ok(request, form):
        errors["__all__"] = "This form has expired. Please sign in again."
        status = 403
    else:
        try:
            body = LoginRequest(
                username=values["username"],
                password=raw_password if isinstance(raw_password, str) else "",
            )
        except ValidationError as exc:
            errors = validation_errors(exc)
            if "username" in errors:
                errors["username"] = "Enter your username or email address"
            if "password" in errors:
                errors["password"] = "Enter your password"  # noqa: S105
    if not errors:
        wait = login_limiter(request).hit(client_ip(request) or "unknown")
        if wait is not None:
            errors["__all__"] = (
                f"Too many sign-in attempts from your address. Try again in {int(wait) + 1} s."
            )
            status = 429
    if errors:
        return page(
            request,
            session,
            None,
            "login.html",
            status=status,
            next_url=next_url,
            form_token=form_token(request),
            values=values,
            errors=errors,
        )
    try:
        sign_in, token = auth_service.login(
            session,
            username=body.username,
            password=body.password,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except (InvalidCredentials, AccountLocked) as exc:
        # These commit: the failed attempt is counted and audited.
        message = exc.message
        if isinstance(exc, AccountLocked):
            message = "Too many failed sign-ins: this account is locked for a while."
        return page(
            request,
            session,
            None,
            "login.html",
            status=exc.status,
            next_url=next_url,
            form_token=form_token(request),
            values=values,
            errors={"__all__": sentence(message)},
        )
    response = redirect(next_url)
    response.set_cookie(
        COOKIE_NAME,
        cookie_value(token),
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.cookie_secure,
        expires=sign_in.expires_at,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, session: DB, form: Form, principal: SignedIn) -> Response:
    """Sign out of this browser."""
    auth_service.logout(session, principal=principal)
    response = redirect("/login", "You have signed out.", "info")
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


def _invitation_state(session: DB, token: str) -> tuple[Any, str | None]:
    """The invitation of a link and why it cannot be used (None when it can)."""
    row = auth_repository.invitation_by_hash(session, token_hash(token))
    if row is None:
        return None, "This invitation link is not valid. Check that you copied all of it."
    if row.accepted_at is not None:
        return row, "This invitation has been used already. Sign in with the account it created."
    if row.revoked_at is not None:
        return row, "This invitation was withdrawn. Ask an administrator for a new one."
    if row.expires_at <= utcnow():
        return row, "This invitation has expired. Ask an administrator for a new one."
    return row, None


@router.get("/invite/{token}")
def invitation_page(request: Request, token: InviteToken, session: DB, _: Anyone) -> Response:
    """Accept an invitation: choose a username and a password."""
    row, problem = _invitation_state(session, token)
    return page(
        request,
        session,
        None,
        "invite.html",
        status=200 if problem is None else (404 if row is None else 410),
        invitation=row,
        problem=problem,
        form_token=form_token(request),
        values={"username": row.handle or "", "email": row.email} if row is not None else {},
        min_length=admin_service.get(session, "security.password_min_length"),
    )


@router.post("/invite/{token}")
@blocking  # argon2
def invitation_accept(
    request: Request, token: InviteToken, session: DB, form: Form, _: Anyone
) -> Response:
    """Create the invited account, then sign in with it."""
    row, problem = _invitation_state(session, token)
    values = {"username": text(form, "username", limit=100), "email": text(form, "email")}
    errors: dict[str, str] = {}
    status = 422
    if problem is None and not _form_token_ok(request, form):
        errors["__all__"] = "This form has expired. Please fill it in again."
        status = 403
    elif problem is None:
        password = form.get("password")
        password = password if isinstance(password, str) else ""
        if password != form.get("password_confirm"):
            errors["password_confirm"] = "The two passwords differ"  # noqa: S105
        try:
            data = InvitationAccept(
                token=token,
                username=values["username"],
                password=password,
                email=values["email"] or None,
            )
        except ValidationError as exc:
            errors = {**validation_errors(exc), **errors}
        if not errors:
            try:
                user = auth_service.accept_invitation(session, data=data, ip=client_ip(request))
            except (NotFound, Gone):
                session.rollback()
                row, problem = _invitation_state(session, token)
            except AppError as exc:
                refused(request, session, None, exc)
                errors = error_fields(exc, {"username", "email", "password"})
            else:
                return redirect(
                    "/login" + query_string({"username": user.username}),
                    "Welcome! Your account is ready: sign in with your new password.",
                )
    return page(
        request,
        session,
        None,
        "invite.html",
        status=status if problem is None else 410,
        invitation=row,
        problem=problem,
        form_token=form_token(request),
        values=values,
        errors=errors,
        min_length=admin_service.get(session, "security.password_min_length"),
    )


# -- dashboard and profile -------------------------------------------------------------------


@router.get("/")
def dashboard_page(request: Request, session: DB, principal: SignedIn) -> Response:
    """Your next bookings, free devices and, for those who act on them, what needs attention."""
    sections = {s.key: s for s in request.app.state.web_sections}
    tz = admin_service.get(session, "general.lab_timezone")
    cards = dashboard.cards(session, principal, sections, now=utcnow(), tz=tz)
    return page(request, session, principal, "dashboard.html", cards=cards)


TOKEN_LIFETIMES = ((7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "1 year"))


def _profile(
    request: Request,
    session: DB,
    principal: Principal,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    user, role = auth_service.get_user(session, principal.user_id or 0)
    max_days = admin_service.get(session, "security.token_max_days")
    choices = [(str(d), label) for d, label in TOKEN_LIFETIMES if d <= max_days]
    for key in ("values", "errors", "password_errors", "token_values", "token_errors"):
        context.setdefault(key, {})
    return page(
        request,
        session,
        principal,
        "profile.html",
        status=status,
        user=user,
        role=role,
        tokens=auth_repository.tokens_of(session, principal.user_id or 0),
        min_length=admin_service.get(session, "security.password_min_length"),
        token_choices=[*choices, ("", "Never")],
        calendar_active=user.calendar_token_hash is not None,
        **context,
    )


@router.get("/profile")
def profile_page(request: Request, session: DB, principal: SignedIn) -> Response:
    """Your account: email, name, Discord id, password and API tokens."""
    return _profile(request, session, principal)


@router.post("/profile")
def profile_update(request: Request, session: DB, form: Form, principal: SignedIn) -> Response:
    """Save your email, name and Discord id."""
    values = {k: text(form, k, limit=300) for k in ("email", "full_name", "discord_id")}
    try:
        data = ProfileUpdate(**{k: v or None for k, v in values.items()})
    except ValidationError as exc:
        return _profile(
            request, session, principal, status=422, values=values, errors=validation_errors(exc)
        )
    try:
        auth_service.update_profile(session, principal=principal, data=data)
    except AppError as exc:
        refused(request, session, principal, exc)
        return _profile(
            request,
            session,
            principal,
            status=exc.status,
            values=values,
            errors=error_fields(exc, set(values)),
        )
    return redirect("/profile", "Your profile is saved.")


@router.post("/profile/password")
@blocking  # argon2
def password_change(request: Request, session: DB, form: Form, principal: SignedIn) -> Response:
    """Change your password; your other sign-ins end."""
    current, new, confirm = (
        form.get("current_password"),
        form.get("new_password"),
        form.get("new_password_confirm"),
    )
    errors: dict[str, str] = {}
    if new != confirm:
        errors["new_password_confirm"] = "The two new passwords differ"  # noqa: S105
    try:
        data = PasswordChange(
            current_password=current if isinstance(current, str) else "",
            new_password=new if isinstance(new, str) else "",
        )
    except ValidationError as exc:
        errors = {**validation_errors(exc), **errors}
    if errors:
        return _profile(request, session, principal, status=422, password_errors=errors)
    try:
        auth_service.change_password(session, principal=principal, data=data)
    except AppError as exc:
        refused(request, session, principal, exc)
        found = error_fields(exc, {"current_password", "password"})
        if "password" in found:
            found["new_password"] = found.pop("password")
        return _profile(request, session, principal, status=exc.status, password_errors=found)
    return redirect("/profile", "Your password is changed. Your other sign-ins have ended.")


@router.post("/profile/tokens")
def token_create(request: Request, session: DB, form: Form, principal: SignedIn) -> Response:
    """Create an API token and show it, once."""
    values = {"name": text(form, "name", limit=200), "expires_days": text(form, "expires_days")}
    try:
        data = TokenCreate(
            name=values["name"],
            expires_days=values["expires_days"] or None,
        )
    except ValidationError as exc:
        return _profile(
            request,
            session,
            principal,
            status=422,
            token_values=values,
            token_errors=validation_errors(exc),
        )
    try:
        row, token = auth_service.create_token(session, principal=principal, data=data)
    except AppError as exc:
        refused(request, session, principal, exc)
        return _profile(
            request,
            session,
            principal,
            status=exc.status,
            token_values=values,
            token_errors=error_fields(exc, {"name", "expires_days"}),
        )
    return _profile(request, session, principal, new_token=token, new_token_name=row.name)


@router.post("/profile/tokens/{token_id}/revoke")
def token_revoke(
    request: Request, token_id: Id, session: DB, form: Form, principal: SignedIn
) -> Response:
    """Revoke one of your API tokens."""
    try:
        row = auth_service.revoke_token(session, principal=principal, token_id=token_id)
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect("/profile", exc.message, "error")
    return redirect("/profile", f"The token “{row.name}” is revoked.")


@router.post("/profile/calendar")
def calendar_feed_create(
    request: Request, session: DB, form: Form, principal: SignedIn
) -> Response:
    """Create your calendar feed, or replace its secret address; shown once."""
    from labkeeper.booking import ics

    token = ics.rotate(session, actor=principal)
    url = f"{str(request.base_url).rstrip('/')}/api/v1/calendar/{token}.ics"
    return _profile(request, session, principal, new_feed_url=url)


@router.post("/profile/calendar/revoke")
def calendar_feed_revoke(
    request: Request, session: DB, form: Form, principal: SignedIn
) -> Response:
    """Turn your calendar feed off: its address stops working."""
    from labkeeper.booking import ics

    ics.revoke(session, actor=principal)
    return redirect("/profile", "Your calendar feed is off; its address no longer works.")


@router.post("/profile/sign-out-everywhere")
def sign_out_everywhere(request: Request, session: DB, form: Form, principal: SignedIn) -> Response:
    """End every sign-in of your account, this one included."""
    count = auth_service.logout_everywhere(session, principal=principal)
    response = redirect("/login", f"Signed out of {count} session(s).", "info")
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


# -- admin: users and invitations ------------------------------------------------------------


def _grantable_roles(principal: Principal) -> list[str]:
    rank = ROLE_RANK.get(principal.role or "", -1)
    return [
        r
        for r in ROLES
        if ROLE_RANK[r] <= rank and (r != "superadmin" or principal.role == "superadmin")
    ]


def _users(
    request: Request,
    session: DB,
    principal: Principal,
    *,
    q: str | None,
    role: str | None,
    state: str | None,
    paging: PageParams,
    status: int = 200,
    **context: Any,
) -> Response:
    role = role if role in ROLES else None
    state = state if state in ("active", "deactivated") else None
    is_active = None if state is None else state == "active"
    rows, total = fetch_page(
        session,
        auth_repository.users_query(q=q, role=role, is_active=is_active),
        paging,
        scalars=False,
    )
    filters = {"q": q or "", "role": role or "", "state": state or ""}
    return page(
        request,
        session,
        principal,
        "admin/users.html",
        status=status,
        users=rows,
        total=total,
        paging=paging,
        filters=filters,
        here="/admin/users" + query_string({**filters, "offset": paging.offset or None}),
        roles=ROLES,
        grantable=_grantable_roles(principal),
        min_length=admin_service.get(session, "security.password_min_length"),
        **context,
    )


@router.get("/admin/users")
def users_page(
    request: Request,
    session: DB,
    principal: UsersReader,
    paging: Paging,
    q: Filter = None,
    role: Filter = None,
    state: Filter = None,
) -> Response:
    """Everyone with an account: search, filter by role, manage roles and access."""
    return _users(request, session, principal, q=q, role=role, state=state, paging=paging)


@router.post("/admin/users")
@blocking  # argon2
def user_create(request: Request, session: DB, form: Form, principal: UsersWriter) -> Response:
    """Create an account with a role and a first password."""
    fields = ("username", "email", "full_name", "role", "password")
    values = {k: text(form, k, limit=300) for k in fields if k != "password"}
    raw_password = form.get("password")
    errors: dict[str, str] = {}
    status = 422
    try:
        data = UserCreate(
            username=values["username"],
            password=raw_password if isinstance(raw_password, str) else "",
            role=values["role"] or "member",
            email=values["email"] or None,
            full_name=values["full_name"] or None,
        )
    except ValidationError as exc:
        errors = validation_errors(exc)
    if not errors:
        try:
            user = auth_service.create_user(session, data=data, actor=principal)
        except AppError as exc:
            refused(request, session, principal, exc)
            errors, status = error_fields(exc, set(fields)), exc.status
        else:
            return redirect(
                "/admin/users" + query_string({"q": user.username}),
                f"{user.username} can now sign in as {data.role}.",
            )
    return _users(
        request,
        session,
        principal,
        q=None,
        role=None,
        state=None,
        paging=PageParams(),
        status=status,
        values=values,
        errors=errors,
        open_create=True,
    )


def _user_action(
    request: Request,
    session: DB,
    form: FormData,
    principal: Principal,
    action: Callable[[], Any],
    done: str,
) -> Response:
    back = safe_next(text(form, "back", limit=2000))
    back = back if back.startswith("/admin/users") else "/admin/users"
    try:
        user = action()
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect(back, sentence(exc.message), "error")
    return redirect(back, done.format(user=user.username))


@router.post("/admin/users/{user_id}")
def user_update(
    request: Request, user_id: Id, session: DB, form: Form, principal: UsersWriter
) -> Response:
    """Change a user's role and role status."""
    try:
        _, current = auth_service.get_user(session, user_id)
    except AppError as exc:
        return redirect("/admin/users", exc.message, "error")
    before = {
        "role": current.role if current else None,
        "role_status": current.status if current else None,
    }
    changes = {
        k: text(form, k, limit=20)
        for k in ("role", "role_status")
        if text(form, k) and text(form, k) != before[k]
    }
    if not changes:
        back = safe_next(text(form, "back", limit=2000))
        return redirect(
            back if back.startswith("/admin/users") else "/admin/users", "Nothing changed.", "info"
        )
    try:
        data = UserUpdate(**changes)
    except ValidationError as exc:
        return redirect("/admin/users", next(iter(validation_errors(exc).values())), "error")

    def act() -> Any:
        return auth_service.update_user(session, user_id=user_id, data=data, actor=principal)[0]

    return _user_action(request, session, form, principal, act, "{user} is updated.")


@router.post("/admin/users/{user_id}/deactivate")
def user_deactivate(
    request: Request, user_id: Id, session: DB, form: Form, principal: UsersWriter
) -> Response:
    """Deactivate an account: it can no longer sign in and its sessions end."""

    def act() -> Any:
        data = UserUpdate(is_active=False)
        return auth_service.update_user(session, user_id=user_id, data=data, actor=principal)[0]

    return _user_action(request, session, form, principal, act, "{user} is deactivated.")


@router.post("/admin/users/{user_id}/reactivate")
def user_reactivate(
    request: Request, user_id: Id, session: DB, form: Form, principal: UsersWriter
) -> Response:
    """Let a deactivated account sign in again."""

    def act() -> Any:
        data = UserUpdate(is_active=True)
        return auth_service.update_user(session, user_id=user_id, data=data, actor=principal)[0]

    return _user_action(request, session, form, principal, act, "{user} can sign in again.")


@router.post("/admin/users/{user_id}/unlock")
def user_unlock(
    request: Request, user_id: Id, session: DB, form: Form, principal: UsersWriter
) -> Response:
    """Clear a sign-in lockout."""

    def act() -> Any:
        return auth_service.unlock_user(session, user_id=user_id, actor=principal)

    return _user_action(request, session, form, principal, act, "{user} is unlocked.")


def _invitations(
    request: Request,
    session: DB,
    principal: Principal,
    *,
    show: str | None,
    paging: PageParams,
    status: int = 200,
    **context: Any,
) -> Response:
    pending_only = show != "all"
    rows, total = fetch_page(
        session, auth_repository.invitations_query(pending_only=pending_only), paging
    )
    return page(
        request,
        session,
        principal,
        "admin/invitations.html",
        status=status,
        invitations=rows,
        total=total,
        paging=paging,
        filters={"show": "" if pending_only else "all"},
        grantable=_grantable_roles(principal),
        days=admin_service.get(session, "security.invitation_days"),
        **context,
    )


@router.get("/admin/invitations")
def invitations_page(
    request: Request, session: DB, principal: UsersWriter, paging: Paging, show: Filter = None
) -> Response:
    """Invitations: invite someone by email, see who has not accepted yet, withdraw one."""
    return _invitations(request, session, principal, show=show, paging=paging)


@router.post("/admin/invitations")
def invitation_create(
    request: Request, session: DB, form: Form, principal: UsersWriter
) -> Response:
    """Invite someone; the link to accept is shown once."""
    values = {k: text(form, k, limit=300) for k in ("email", "role", "handle")}
    try:
        data = InvitationCreate(
            email=values["email"],
            role=values["role"] or "member",
            handle=values["handle"] or None,
        )
    except ValidationError as exc:
        errors = validation_errors(exc)
    else:
        try:
            row, token = auth_service.invite(session, data=data, actor=principal)
        except AppError as exc:
            refused(request, session, principal, exc)
            errors = error_fields(exc, set(values))
        else:
            base = str(request.base_url).rstrip("/")
            return _invitations(
                request,
                session,
                principal,
                show=None,
                paging=PageParams(),
                status=201,
                created={"email": row.email, "role": row.role, "url": f"{base}/invite/{token}"},
            )
    return _invitations(
        request,
        session,
        principal,
        show=None,
        paging=PageParams(),
        status=422,
        values=values,
        errors=errors,
    )


@router.post("/admin/invitations/{invitation_id}/revoke")
def invitation_revoke(
    request: Request, invitation_id: Id, session: DB, form: Form, principal: UsersWriter
) -> Response:
    """Withdraw a pending invitation."""
    try:
        row = auth_service.revoke_invitation(session, invitation_id=invitation_id, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect("/admin/invitations", exc.message, "error")
    return redirect("/admin/invitations", f"The invitation of {row.email} is withdrawn.")


# -- admin: audit log ------------------------------------------------------------------------

AUDIT_ACTIONS = (
    "auth.login",
    "auth.logout",
    "users.",
    "invitations.",
    "tokens.",
    "settings.",
    "web.",
    "api.",
)


def _day(value: str | None) -> tuple[date | None, str | None]:
    if not value:
        return None, None
    try:
        return date.fromisoformat(value), None
    except ValueError:
        return None, "Use a date like 2026-05-01"


@router.get("/admin/audit")
def audit_page(
    request: Request,
    session: DB,
    principal: LogsReader,
    paging: Paging,
    action: Filter = None,
    actor: Filter = None,
    outcome: Filter = None,
    since: Filter = None,
    until: Filter = None,
) -> Response:
    """The audit log, newest first: filter by action, person, outcome and dates; export as CSV."""
    tz = admin_service.get(session, "general.lab_timezone")
    errors: dict[str, str] = {}
    start, problem = _day(since)
    if problem:
        errors["since"] = problem
    end, problem = _day(until)
    if problem:
        errors["until"] = problem
    if start and end and end < start:
        errors["until"] = "The end date is before the start date"
    outcome = outcome if outcome in ("success", "failure", "error") else None
    actor_id: int | None = None
    if actor:
        user = auth_repository.user_by_username(session, actor)
        if user is None:
            errors["actor"] = f"Nobody is called “{actor}”"
        else:
            actor_id = user.id
    api_filters: dict[str, Any] = {
        "action": action or None,
        "actor_id": actor_id,
        "outcome": outcome,
        "since": day_start(start, tz) if start else None,
        "until": day_end(end, tz) if end else None,
    }
    rows: list[Any] = []
    total = 0
    if not errors:
        rows, total = fetch_page(session, admin_repository.audit_query(**api_filters), paging)
    filters = {
        "action": action or "",
        "actor": actor or "",
        "outcome": outcome or "",
        "since": since or "",
        "until": until or "",
    }
    export = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in api_filters.items()}
    return page(
        request,
        session,
        principal,
        "admin/audit.html",
        status=200 if not errors else 422,
        rows=rows,
        total=total,
        paging=paging,
        filters=filters,
        errors=errors,
        actions=AUDIT_ACTIONS,
        export_url="/api/v1/audit/export.csv" + query_string(export),
        filtered=any(filters.values()),
    )


# -- admin: settings -------------------------------------------------------------------------


def _settings(
    request: Request, session: DB, principal: Principal, *, status: int = 200, **context: Any
) -> Response:
    groups = settings_form.groups(admin_service.get_all(session, mask=True))
    return page(
        request, session, principal, "admin/settings.html", status=status, groups=groups, **context
    )


@router.get("/admin/settings")
def settings_page(request: Request, session: DB, principal: SettingsWriter) -> Response:
    """Every setting, grouped by category, typed, with its default."""
    return _settings(request, session, principal)


@router.post("/admin/settings")
def settings_save(request: Request, session: DB, form: Form, principal: SettingsWriter) -> Response:
    """Save the settings of one category: all of them or, if one is refused, none."""
    keys = [k for k in form.getlist("fields") if isinstance(k, str) and k in REGISTRY]
    rows = {r["key"]: r for r in admin_service.get_all(session, mask=True)}
    fields = [settings_form.make_field(REGISTRY[k], rows[k]) for k in dict.fromkeys(keys)]
    reset = text(form, "reset", limit=100)
    wanted = settings_form.submitted(form, fields)
    errors: dict[str, str] = {}
    changed: list[str] = []
    for f in fields:
        value = wanted[f.key]
        if f.key == reset:
            if not f.is_default:
                admin_service.reset(session, key=f.key, actor=principal)
                changed.append(f.key)
            continue
        if value is settings_form.KEEP or (f.kind == "secret" and value is None and not f.is_set):
            continue
        if f.kind != "secret":
            try:
                if REGISTRY[f.key].validate(value) == f.value:
                    continue  # unchanged: no write, no audit row
            except ValidationError:
                pass  # put() refuses it below, with the message people see
        try:
            admin_service.put(session, key=f.key, value=value, actor=principal)
            changed.append(f.key)
        except AppError as exc:
            errors[f.key] = exc.message.removeprefix(f"{f.key}: ").removeprefix("Value error, ")
    if errors:
        first = next(iter(errors.values()))
        refused(request, session, principal, Invalid(first))
        submitted = {
            k: ("" if v is settings_form.KEEP else v)
            for k, v in wanted.items()
            if REGISTRY[k].sensitive is False
        }
        return _settings(request, session, principal, status=422, errors=errors, values=submitted)
    anchor = "#" + quote(REGISTRY[keys[0]].category) if keys else ""
    if not changed:
        return redirect("/admin/settings" + anchor, "Nothing changed.", "info")
    noun = "setting" if len(changed) == 1 else "settings"
    return redirect("/admin/settings" + anchor, f"Saved {len(changed)} {noun}.")


# -- installation and error pages ------------------------------------------------------------


def _api_routes(app: FastAPI) -> Iterator[tuple[str, list[str]]]:
    for prefix, api_router in getattr(app.state, "included", []):
        for route in api_router.routes:
            if isinstance(route, APIRoute):
                yield prefix + route.path, [str(t) for t in route.tags]


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/static/")) or path in ("/healthz", "/readyz", "/metrics"):
        return False
    return "text/html" in request.headers.get("accept", "") or "hx-request" in request.headers


def _error_page(
    request: Request, status: int, title: str, message: str, errors: list[str] | None = None
) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    db: Database = request.app.state.db
    context = {"title": title, "message": message, "problems": errors or [], "code": status}
    try:
        with db.scope(write=False) as session:
            return page(request, session, principal, "error.html", status=status, **context)
    except Exception:  # an error page must render even when the database is away
        log.exception("could not render the error page with the lab's settings")
        return page(request, None, principal, "error.html", status=status, **context)


def _sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/login" if request.method != "GET" or target == "/" else f"/login?next={quote(target)}"
    if "hx-request" in request.headers:
        response: Response = Response(status_code=401, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    if COOKIE_NAME in request.cookies:
        response.delete_cookie(COOKIE_NAME, path="/")
        flash(response, "Your sign-in has ended. Please sign in again.", "info")
    return response


TITLES = {
    400: "That request could not be read",
    403: "You do not have access to this",
    404: "There is nothing here",
    405: "That is not allowed here",
    409: "That collides with something else",
    410: "That is gone",
    422: "Something in that request is not right",
    429: "Slow down a little",
    503: "labkeeper is busy",
}


async def _call(handler: Any, request: Request, exc: Exception) -> Response:
    answer = handler(request, exc)
    if inspect.isawaitable(answer):
        answer = await answer
    return cast(Response, answer)


def _html_errors(app: FastAPI) -> None:
    """Answer browsers with pages; API clients keep getting JSON from the app's handlers."""
    json_app_error = app.exception_handlers[AppError]
    json_validation = app.exception_handlers[RequestValidationError]
    json_http = app.exception_handlers[StarletteHTTPException]
    json_unexpected = app.exception_handlers.get(Exception)

    async def app_error(request: Request, exc: Exception) -> Response:
        # The JSON handler also writes the refusal to the audit trail: keep that for pages.
        answer = await _call(json_app_error, request, exc)
        if not _wants_html(request) or not isinstance(exc, AppError):
            return answer
        if isinstance(exc, Unauthenticated):
            return _sign_in_redirect(request)
        title = TITLES.get(exc.status, "That did not work")
        message = sentence(exc.message)
        if isinstance(exc, CsrfFailed):
            title = "This form has expired"
            message = "The page was open too long or in another session. Reload it and try again."
        elif isinstance(exc, PermissionDenied):
            message += ". Ask an administrator if you need it."
        return await run_in_threadpool(_error_page, request, exc.status, title, message)

    async def validation(request: Request, exc: Exception) -> Response:
        if not _wants_html(request) or not isinstance(exc, RequestValidationError):
            return await _call(json_validation, request, exc)
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
            for e in exc.errors()
        ][:5]
        message = "The address has a value labkeeper cannot use. Go back and try again."
        return await run_in_threadpool(_error_page, request, 422, TITLES[422], message, problems)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not _wants_html(request) or not isinstance(exc, StarletteHTTPException):
            return await _call(json_http, request, exc)
        status = exc.status_code
        message = {
            404: f"No page lives at {request.url.path}. Check the address or go to the dashboard.",
            405: "This page does not take that kind of request.",
        }.get(status, str(exc.detail))
        return await run_in_threadpool(
            _error_page, request, status, TITLES.get(status, "That did not work"), message
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        answer: Response = (
            await _call(json_unexpected, request, exc)
            if json_unexpected is not None
            else Response("internal error", status_code=500)
        )
        if not _wants_html(request):
            return answer
        try:
            principal = getattr(request.state, "principal", None)
            return page(
                request,
                None,
                principal,
                "error.html",
                status=500,
                code=500,
                title="Something went wrong on our side",
                message="It has been logged. Try again in a moment.",
                problems=[],
            )
        except Exception:
            return answer

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    if json_unexpected is not None:
        app.add_exception_handler(Exception, unexpected)


def _page_routers() -> Iterator[APIRouter]:
    """The routers of every module in `labkeeper.web.pages`, in name order."""
    from labkeeper.web import pages

    for info in sorted(pkgutil.iter_modules(pages.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{pages.__name__}.{info.name}")
        yield module.router


def install(app: FastAPI) -> None:
    """Serve the pages and our static files, and answer browsers' errors with pages."""
    routers = [router, *_page_routers()]
    for page_router in routers:
        include(app, page_router)
    app.state.web_pages = frozenset(
        r.path
        for page_router in routers
        for r in page_router.routes
        if isinstance(r, APIRoute) and "GET" in (r.methods or ())
    )
    app.state.web_sections = find_sections(_api_routes(app), app.state.web_pages)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _html_errors(app)


__all__ = ["FLASH_COOKIE", "install", "router"]
