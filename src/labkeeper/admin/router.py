"""Settings and the audit log."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, Query
from fastapi.responses import StreamingResponse

from labkeeper.admin import repository, service
from labkeeper.admin.schemas import AuditRead, SettingRead, SettingWrite
from labkeeper.auth.deps import Principal, require
from labkeeper.auth.permissions import AUTHENTICATED
from labkeeper.core.db import DbSession
from labkeeper.core.pagination import Page, PageParams, fetch_page, page_params
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import MAX_ID, AwareDatetime

router = APIRouter()
DB = DbSession


@router.get("/settings", response_model=list[SettingRead], tags=["settings"])
def list_settings(
    session: DB,
    _: Annotated[Principal, Depends(require(AUTHENTICATED))],
    category: Annotated[str | None, Query(max_length=50)] = None,
) -> Any:
    """Every known setting with its value (secrets masked) and default."""
    rows = service.get_all(session)
    return [r for r in rows if category is None or r["category"] == category]


@router.put("/settings/{key}", response_model=SettingRead, tags=["settings"])
def put_setting(
    key: str,
    body: SettingWrite,
    session: DB,
    principal: Annotated[Principal, Depends(require("settings:write"))],
) -> Any:
    """Change one setting; the value is validated against its type."""
    service.put(session, key=key, value=body.value, actor=principal)
    return next(r for r in service.get_all(session) if r["key"] == key)


@router.patch("/settings", response_model=list[SettingRead], tags=["settings"])
def patch_settings(
    session: DB,
    principal: Annotated[Principal, Depends(require("settings:write"))],
    values: Annotated[dict[str, Any], Body(examples=[{"general.lab_timezone": "Europe/Dublin"}])],
) -> Any:
    """Change several settings at once: all are stored or none."""
    for key, value in values.items():
        service.put(session, key=key, value=value, actor=principal)
    return [r for r in service.get_all(session) if r["key"] in values]


@router.delete("/settings/{key}", response_model=SettingRead, tags=["settings"])
def reset_setting(
    key: str, session: DB, principal: Annotated[Principal, Depends(require("settings:write"))]
) -> Any:
    """Return a setting to its default."""
    service.reset(session, key=key, actor=principal)
    return next(r for r in service.get_all(session) if r["key"] == key)


async def _audit_filters(
    actor_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    action: Annotated[str | None, Query(max_length=100, description="Action or its prefix")] = None,
    entity_type: Annotated[str | None, Query(max_length=50)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Literal["success", "failure", "error"] | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    return {
        "actor_id": actor_id,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "outcome": outcome,
        "since": since,
        "until": until,
        "q": q,
    }


@router.get("/audit", response_model=Page[AuditRead], tags=["audit"])
def list_audit(
    session: DB,
    _: Annotated[Principal, Depends(require("logs:read"))],
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[dict[str, Any], Depends(_audit_filters)],
) -> Any:
    """The audit log, newest first, filtered."""
    rows, total = fetch_page(session, repository.audit_query(**filters), page)
    return {"items": rows, "total": total, "limit": page.limit, "offset": page.offset}


@router.get("/audit/export.csv", tags=["audit"], response_class=StreamingResponse)
def export_audit(
    session: DB,
    _: Annotated[Principal, Depends(require("logs:export"))],
    filters: Annotated[dict[str, Any], Depends(_audit_filters)],
) -> StreamingResponse:
    """The filtered audit log as CSV."""
    columns = [
        "id",
        "created_at",
        "actor_id",
        "actor_username",
        "actor_role",
        "action",
        "entity_type",
        "entity_id",
        "outcome",
        "message",
        "ip",
        "payload",
    ]
    rows = list(session.scalars(repository.audit_query(**filters).limit(100_000)))

    def generate() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        for row in rows:
            values = [getattr(row, c) for c in columns[:-1]]
            values = [v.isoformat() if isinstance(v, datetime) else v for v in values]
            writer.writerow([*values, json.dumps(row.payload) if row.payload else ""])
            if buf.tell() > 64_000:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    return StreamingResponse(
        generate(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )
