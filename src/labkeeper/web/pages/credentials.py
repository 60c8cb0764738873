"""The credential store: list, create, change and delete the logins backups use.

Secrets are write-only: the forms take them and never render them back, not even as a masked
value or a length (a form shown again after an error asks for them again).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from labkeeper.auth.deps import Principal, require
from labkeeper.backups import repository, service
from labkeeper.backups.schemas import CredentialCreate, CredentialUpdate
from labkeeper.core.errors import AppError
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import Id
from labkeeper.web.deps import DB, Filter, Form, Paging, refused
from labkeeper.web.render import error_fields, page, redirect, sentence, text, validation_errors

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("credentials:read"))]
Writer = Annotated[Principal, Depends(require("credentials:write"))]
PLAIN_FIELDS = ("name", "username", "description", "tags")
SECRET_FIELDS = ("password", "enable_secret", "ssh_key")
DEFAULT_PRIORITY = 100


def parse_tags(value: str) -> list[dict[str, Any]]:
    """'lab:10, core' -> [{tag: lab, priority: 10}, {tag: core, priority: 100}]."""
    out = []
    for part in value.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, priority = part.partition(":")
        name, priority = name.strip(), priority.strip()
        if priority and not priority.isdigit():
            raise ValueError(f"the priority of {name!r} must be a whole number, e.g. {name}:10")
        out.append({"tag": name, "priority": int(priority) if priority else DEFAULT_PRIORITY})
    return out


def format_tags(tags: list[dict[str, Any]]) -> str:
    """The tag links of a credential as the form shows them."""
    return ", ".join(f"{t['tag']}:{t['priority']}" for t in tags)


def _secret(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value != "" else None


def _list(
    request: Request,
    session: DB,
    principal: Principal,
    *,
    paging: PageParams,
    q: str | None = None,
    tag: str | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    rows, total = fetch_page(session, repository.credentials_query(q=q, tag=tag), paging)
    return page(
        request,
        session,
        principal,
        "credentials/index.html",
        status=status,
        credentials=service.credential_views(session, rows),
        total=total,
        paging=paging,
        filters={"q": q or "", "tag": tag or ""},
        **context,
    )


@router.get("/credentials")
def credentials_page(
    request: Request,
    session: DB,
    principal: Reader,
    paging: Paging,
    q: Filter = None,
    tag: Filter = None,
) -> Response:
    """The credentials, the tags they serve with their priority, and how well they work."""
    return _list(request, session, principal, paging=paging, q=q, tag=tag)


@router.post("/credentials")
def credential_create(request: Request, session: DB, form: Form, principal: Writer) -> Response:
    """Store a credential; its secrets are encrypted and never shown again."""
    values = {k: text(form, k, limit=5000) for k in PLAIN_FIELDS}
    errors: dict[str, str] = {}
    try:
        tags = parse_tags(values["tags"])
    except ValueError as exc:
        errors["tags"] = sentence(str(exc))
        tags = []
    if _secret(form, "password") is None:
        errors["password"] = "Enter the password the devices accept"  # noqa: S105
    try:
        data = CredentialCreate(
            name=values["name"],
            username=values["username"],
            password=_secret(form, "password") or "",
            enable_secret=_secret(form, "enable_secret"),
            ssh_key=_secret(form, "ssh_key"),
            description=values["description"] or None,
            tags=tags,
        )
    except ValidationError as exc:
        errors = {**validation_errors(exc), **errors}
    if not errors:
        try:
            row = service.create_credential(session, data=data, actor=principal)
        except AppError as exc:
            refused(request, session, principal, exc)
            errors = error_fields(exc, {*PLAIN_FIELDS, *SECRET_FIELDS})
        else:
            return redirect("/credentials", f"The credential “{row.name}” is stored.")
    return _list(
        request,
        session,
        principal,
        paging=PageParams(),
        status=422,
        values=values,
        errors=errors,
        open_create=True,
    )


def _detail(
    request: Request,
    session: DB,
    principal: Principal,
    credential: dict[str, Any],
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    values = values or {
        "name": credential["name"],
        "username": credential["username"],
        "description": credential["description"] or "",
        "tags": format_tags(credential["tags"]),
    }
    return page(
        request,
        session,
        principal,
        "credentials/edit.html",
        status=status,
        credential=credential,
        values=values,
        errors=errors or {},
    )


@router.get("/credentials/{credential_id}")
def credential_page(
    request: Request, credential_id: Id, session: DB, principal: Reader
) -> Response:
    """One credential: its tags, counters and (for writers) a form to change it."""
    return _detail(request, session, principal, service.credential_detail(session, credential_id))


@router.post("/credentials/{credential_id}")
def credential_update(
    request: Request, credential_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Change a credential; a secret left empty stays as it is."""
    current = service.credential_detail(session, credential_id)
    values = {k: text(form, k, limit=5000) for k in PLAIN_FIELDS}
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {
        "name": values["name"],
        "username": values["username"],
        "description": values["description"] or None,
    }
    try:
        changes["tags"] = parse_tags(values["tags"])
    except ValueError as exc:
        errors["tags"] = sentence(str(exc))
    for name in SECRET_FIELDS:
        given = _secret(form, name)
        if given is not None:
            changes[name] = given
        elif name != "password" and form.get(f"clear_{name}"):
            changes[name] = None
    try:
        data = CredentialUpdate.model_validate(changes)
    except ValidationError as exc:
        errors = {**validation_errors(exc), **errors}
    if not errors:
        try:
            service.update_credential(
                session, credential_id=credential_id, data=data, actor=principal
            )
        except AppError as exc:
            refused(request, session, principal, exc)
            errors = error_fields(exc, {*PLAIN_FIELDS, *SECRET_FIELDS})
        else:
            return redirect(f"/credentials/{credential_id}", "The credential is saved.")
    return _detail(request, session, principal, current, status=422, values=values, errors=errors)


@router.post("/credentials/{credential_id}/delete")
def credential_delete(
    request: Request, credential_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Delete a credential and its tag links."""
    try:
        service.delete_credential(session, credential_id=credential_id, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect("/credentials", sentence(exc.message), "error")
    return redirect("/credentials", "The credential is deleted.")
