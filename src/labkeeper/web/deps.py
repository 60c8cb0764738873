"""What every page module shares: the request parts views declare, and how a refusal is handled.

A page module (`labkeeper/web/pages/NAME.py`) defines `router = APIRouter(include_in_schema=False)`
and its views; `views.install` finds and serves every such module. Views take `session: DB`, the
principal through one of the `require(...)` aliases below (or their own `require("perm:key")`),
and `form: Form` for posts, so the CSRF token is checked before the view runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Query, Request
from starlette.datastructures import FormData

from labkeeper.auth.deps import Principal, require
from labkeeper.auth.permissions import AUTHENTICATED, PUBLIC
from labkeeper.core import audit
from labkeeper.core.db import DbSession
from labkeeper.core.errors import AppError
from labkeeper.core.pagination import PageParams, page_params
from labkeeper.web.render import form_data

if TYPE_CHECKING:  # DbSession is built at run time; to mypy it is a plain Session.
    from sqlalchemy.orm import Session as DB
else:
    DB = DbSession

Form = Annotated[FormData, Depends(form_data)]
Anyone = Annotated[Principal | None, Depends(require(PUBLIC))]
SignedIn = Annotated[Principal, Depends(require(AUTHENTICATED))]
Paging = Annotated[PageParams, Depends(page_params)]
Filter = Annotated[str | None, Query(max_length=100)]


def refused(request: Request, session: DB, principal: Principal | None, exc: AppError) -> None:
    """Undo a refused change and keep a trace of the refusal, as the API does."""
    if exc.commit:  # the service recorded the failure itself and its rows must stay
        return
    session.rollback()
    if principal is None:
        return
    route = request.scope.get("route")
    action = getattr(route, "name", None) or request.url.path
    audit.record(
        session,
        principal,
        f"web.{action}",
        "request",
        None,
        payload={"path": request.url.path, "method": request.method, "code": exc.code},
        outcome="failure",
        message=exc.message,
    )


def client_ip(request: Request) -> str | None:
    """The address the request came from."""
    return request.client.host if request.client else None


__all__ = ["DB", "Anyone", "Filter", "Form", "Paging", "SignedIn", "client_ip", "refused"]
