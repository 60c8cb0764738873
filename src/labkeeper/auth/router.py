"""Sign-in, the current user, API tokens, users and invitations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response

from labkeeper.auth import repository, service
from labkeeper.auth.deps import COOKIE_NAME, Principal, cookie_value, require
from labkeeper.auth.permissions import AUTHENTICATED, PUBLIC
from labkeeper.auth.ratelimit import SlidingWindow
from labkeeper.auth.repository import CREDENTIAL_COLUMNS
from labkeeper.auth.schemas import (
    InvitationAccept,
    InvitationCreate,
    InvitationCreated,
    InvitationRead,
    LoginRequest,
    LoginResponse,
    PasswordChange,
    ProfileUpdate,
    Role,
    RoleStatus,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from labkeeper.core.db import DbSession
from labkeeper.core.errors import RateLimited
from labkeeper.core.pagination import Page, PageParams, fetch_page, page_params
from labkeeper.core.routing import APIRouter, blocking
from labkeeper.core.schemas import Id

router = APIRouter()
DB = DbSession


def _limiter(request: Request) -> SlidingWindow:
    # One limiter per application instance, sized from its settings.
    limiter = getattr(request.app.state, "login_limiter", None)
    if limiter is None:
        limiter = SlidingWindow(request.app.state.settings.login_rate_per_minute, 60.0)
        request.app.state.login_limiter = limiter
    return limiter


@router.post("/auth/login", response_model=LoginResponse, tags=["auth"])
@blocking  # argon2
def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    session: DB,
    _: Annotated[Any, Depends(require(PUBLIC))],
) -> LoginResponse:
    """Sign in: returns a bearer token and sets the browser session cookie."""
    ip = request.client.host if request.client else "unknown"
    wait = _limiter(request).hit(ip)
    if wait is not None:
        raise RateLimited(
            f"too many sign-in attempts from {ip}; try again in {int(wait) + 1} s",
            details={"retry_after": int(wait) + 1},
        )
    sign_in, token = service.login(
        session,
        username=body.username,
        password=body.password,
        ip=ip,
        user_agent=request.headers.get("user-agent"),
    )
    response.set_cookie(
        COOKIE_NAME,
        cookie_value(token),
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.cookie_secure,
        expires=sign_in.expires_at,
        path="/",
    )
    return LoginResponse(
        access_token=token, expires_at=sign_in.expires_at, csrf_token=sign_in.csrf_token
    )


@router.post("/auth/logout", status_code=204, tags=["auth"])
def logout(
    response: Response,
    session: DB,
    principal: Annotated[Principal, Depends(require(AUTHENTICATED))],
) -> Response:
    """Sign out of this session."""
    service.logout(session, principal=principal)
    response.delete_cookie(COOKIE_NAME, path="/")
    response.status_code = 204
    return response


@router.post("/auth/logout-all", tags=["auth"])
def logout_all(
    response: Response,
    session: DB,
    principal: Annotated[Principal, Depends(require(AUTHENTICATED))],
) -> dict[str, int]:
    """Sign out of every session of this account."""
    count = service.logout_everywhere(session, principal=principal)
    response.delete_cookie(COOKIE_NAME, path="/")
    return {"sessions_ended": count}


@router.get("/auth/me", response_model=UserRead, tags=["auth"])
def me(
    request: Request, session: DB, principal: Annotated[Principal, Depends(require(AUTHENTICATED))]
) -> Any:
    """The signed-in user, with role and permissions."""
    # The row authentication loaded already: no further query.
    (view,) = service.user_rows_view([request.state.auth_user], skip=CREDENTIAL_COLUMNS)
    view["permissions"] = sorted(principal.permissions)  # a token's scopes narrow them
    return view


@router.patch("/auth/me", response_model=UserRead, tags=["auth"])
def update_me(
    body: ProfileUpdate,
    session: DB,
    principal: Annotated[Principal, Depends(require(AUTHENTICATED))],
) -> Any:
    """Change your own email, name or Discord id."""
    user = service.update_profile(session, principal=principal, data=body)
    return service.user_view(user, repository.role_of(session, user.id))


@router.post("/auth/password", status_code=204, tags=["auth"])
@blocking  # argon2
def change_password(
    body: PasswordChange,
    session: DB,
    principal: Annotated[Principal, Depends(require(AUTHENTICATED))],
) -> Response:
    """Change your own password; your other sessions are signed out."""
    service.change_password(session, principal=principal, data=body)
    return Response(status_code=204)


@router.get("/auth/tokens", response_model=list[TokenRead], tags=["auth"])
def list_tokens(
    session: DB, principal: Annotated[Principal, Depends(require(AUTHENTICATED))]
) -> Any:
    """Your API tokens (never the tokens themselves)."""
    return repository.tokens_of(session, principal.user_id or 0)


@router.post("/auth/tokens", response_model=TokenCreated, status_code=201, tags=["auth"])
def create_token(
    body: TokenCreate, session: DB, principal: Annotated[Principal, Depends(require(AUTHENTICATED))]
) -> Any:
    """Create an API token; it is shown in this answer only."""
    row, token = service.create_token(session, principal=principal, data=body)
    return {**TokenRead.model_validate(row).model_dump(), "token": token}


@router.delete("/auth/tokens/{token_id}", status_code=204, tags=["auth"])
def revoke_token(
    token_id: Id, session: DB, principal: Annotated[Principal, Depends(require(AUTHENTICATED))]
) -> Response:
    """Revoke one of your API tokens."""
    service.revoke_token(session, principal=principal, token_id=token_id)
    return Response(status_code=204)


@router.get("/users", response_model=Page[UserRead], tags=["users"])
def list_users(
    session: DB,
    _: Annotated[Principal, Depends(require("users:read"))],
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[
        str | None, Query(max_length=100, description="Part of username, email or name")
    ] = None,
    role: Role | None = None,
    role_status: RoleStatus | None = None,
    is_active: bool | None = None,
) -> Any:
    """All users, filtered and paginated."""
    rows, total = fetch_page(
        session,
        repository.user_rows_query(q=q, role=role, is_active=is_active, status=role_status),
        page,
        plain=True,
    )
    return {
        "items": service.user_rows_view(rows),
        "total": total,
        "limit": page.limit,
        "offset": page.offset,
    }


@router.post("/users", response_model=UserRead, status_code=201, tags=["users"])
@blocking  # argon2
def create_user(
    body: UserCreate, session: DB, principal: Annotated[Principal, Depends(require("users:write"))]
) -> Any:
    """Create a user (admins)."""
    user = service.create_user(session, data=body, actor=principal)
    return service.user_view(user, repository.role_of(session, user.id))


@router.get("/users/{user_id}", response_model=UserRead, tags=["users"])
def get_user(
    user_id: Id, session: DB, principal: Annotated[Principal, Depends(require(AUTHENTICATED))]
) -> Any:
    """One user (yourself, or anyone with users:read)."""
    if user_id != principal.user_id and not principal.can("users:read"):
        from labkeeper.core.errors import PermissionDenied

        raise PermissionDenied("you may only look at your own account")
    user, role = service.get_user(session, user_id)
    return service.user_view(user, role)


@router.patch("/users/{user_id}", response_model=UserRead, tags=["users"])
def update_user(
    user_id: Id,
    body: UserUpdate,
    session: DB,
    principal: Annotated[Principal, Depends(require("users:write"))],
) -> Any:
    """Change a user's profile, role, role status, permission overrides or approval limits."""
    user, role = service.update_user(session, user_id=user_id, data=body, actor=principal)
    return service.user_view(user, role)


@router.post("/users/{user_id}/deactivate", response_model=UserRead, tags=["users"])
def deactivate_user(
    user_id: Id, session: DB, principal: Annotated[Principal, Depends(require("users:write"))]
) -> Any:
    """Deactivate a user: they can no longer sign in and their sessions end."""
    user, role = service.update_user(
        session, user_id=user_id, data=UserUpdate(is_active=False), actor=principal
    )
    return service.user_view(user, role)


@router.post("/users/{user_id}/unlock", response_model=UserRead, tags=["users"])
def unlock_user(
    user_id: Id, session: DB, principal: Annotated[Principal, Depends(require("users:write"))]
) -> Any:
    """Clear a sign-in lockout."""
    user = service.unlock_user(session, user_id=user_id, actor=principal)
    return service.user_view(user, repository.role_of(session, user.id))


@router.get("/invitations", response_model=Page[InvitationRead], tags=["users"])
def list_invitations(
    session: DB,
    _: Annotated[Principal, Depends(require("users:write"))],
    page: Annotated[PageParams, Depends(page_params)],
    pending: bool = False,
) -> Any:
    """Invitations, newest first."""
    rows, total = fetch_page(session, repository.invitations_query(pending_only=pending), page)
    return {"items": rows, "total": total, "limit": page.limit, "offset": page.offset}


@router.post("/invitations", response_model=InvitationCreated, status_code=201, tags=["users"])
def create_invitation(
    body: InvitationCreate,
    request: Request,
    session: DB,
    principal: Annotated[Principal, Depends(require("users:write"))],
) -> Any:
    """Invite someone by email; the token is in this answer only."""
    row, token = service.invite(session, data=body, actor=principal)
    base = str(request.base_url).rstrip("/")
    return {
        **InvitationRead.model_validate(row).model_dump(),
        "token": token,
        "accept_url": f"{base}/invite/{token}",
    }


@router.delete("/invitations/{invitation_id}", status_code=204, tags=["users"])
def revoke_invitation(
    invitation_id: Id, session: DB, principal: Annotated[Principal, Depends(require("users:write"))]
) -> Response:
    """Withdraw a pending invitation."""
    service.revoke_invitation(session, invitation_id=invitation_id, actor=principal)
    return Response(status_code=204)


@router.post("/invitations/accept", response_model=UserRead, status_code=201, tags=["users"])
@blocking  # argon2
def accept_invitation(
    body: InvitationAccept,
    request: Request,
    session: DB,
    _: Annotated[Any, Depends(require(PUBLIC))],
) -> Any:
    """Accept an invitation: creates your account with the invited role."""
    user = service.accept_invitation(
        session, data=body, ip=request.client.host if request.client else None
    )
    return service.user_view(user, repository.role_of(session, user.id))
