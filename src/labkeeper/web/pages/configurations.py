"""Stored configurations: search across them, devices with their latest backup, history, diffs.

Views call the backups service (as the API does) and only shape its answers for the page: the
search hits' matching words are split out for highlighting, and a diff is laid out side by side
(the service's unified text is shown as it is in the unified view).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response

from labkeeper.auth.deps import Principal, require
from labkeeper.backups import repository, service
from labkeeper.backups.schemas import BackupRunCreate, single_line
from labkeeper.core.errors import AppError, Invalid, NotFound
from labkeeper.core.pagination import fetch_page
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import MAX_ID, Id
from labkeeper.web.deps import DB, Filter, Form, Paging, refused
from labkeeper.web.render import page, query_string, redirect

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("backups:read"))]
Writer = Annotated[Principal, Depends(require("backups:write"))]
BackupId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Search = Annotated[str | None, Query(max_length=200)]
# Lines of unchanged text kept around each change in the side-by-side view.
CONTEXT = 3


@dataclass(frozen=True)
class Row:
    """One row of a side-by-side diff: a line on the left, on the right, or a gap marker."""

    kind: str  # equal | replace | delete | insert | gap
    left_no: int | None = None
    left: str = ""
    right_no: int | None = None
    right: str = ""
    skipped: int = 0


def highlight(text: str, words: list[str]) -> list[tuple[str, bool]]:
    """`text` cut into (piece, matches a search word) so the page can mark the matches."""
    if not words:
        return [(text, False)]
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    out: list[tuple[str, bool]] = []
    at = 0
    for match in pattern.finditer(text):
        if match.start() > at:
            out.append((text[at : match.start()], False))
        out.append((match.group(0), True))
        at = match.end()
    if at < len(text):
        out.append((text[at:], False))
    return out


def side_by_side(old: str, new: str, *, context: int = CONTEXT) -> list[Row]:
    """The changed stretches of two texts, aligned line by line, with gaps for unchanged runs."""
    a, b = old.splitlines(), new.splitlines()
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    rows: list[Row] = []
    shown_to = 0  # left lines before this index were shown or counted as a gap
    for group in matcher.get_grouped_opcodes(context):
        first = group[0][1]
        if first > shown_to:
            rows.append(Row("gap", skipped=first - shown_to))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for k in range(i2 - i1):
                    rows.append(Row("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]))
            else:
                for k in range(max(i2 - i1, j2 - j1)):
                    left_no = i1 + k + 1 if i1 + k < i2 else None
                    right_no = j1 + k + 1 if j1 + k < j2 else None
                    kind = tag
                    if tag == "replace":
                        kind = (
                            "replace" if left_no and right_no else "delete" if left_no else "insert"
                        )
                    rows.append(
                        Row(
                            kind,
                            left_no,
                            a[left_no - 1] if left_no else "",
                            right_no,
                            b[right_no - 1] if right_no else "",
                        )
                    )
        shown_to = group[-1][2]
    if rows and shown_to < len(a):
        rows.append(Row("gap", skipped=len(a) - shown_to))
    return rows


def unified_lines(text: str) -> list[tuple[str, str]]:
    """(css kind, line) of a unified diff: file headers, hunk headers, added, removed, context."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


# -- search and devices ----------------------------------------------------------------------


@router.get("/configurations")
def configurations_page(
    request: Request,
    session: DB,
    principal: Reader,
    paging: Paging,
    q: Search = None,
    device: Filter = None,
    state: Filter = None,
) -> Response:
    """Search across the newest configurations, and every device with its latest backup."""
    errors: dict[str, str] = {}
    hits: list[dict[str, Any]] = []
    hit_total = 0
    words: list[str] = []
    status = 200
    q = (q or "").strip()
    if q:
        try:
            single_line(q)
            words = service.search_words(q)
        except (ValueError, Invalid):
            errors["q"] = "Search for words on one line"
            status = 422
        else:
            backend = session.get_bind().dialect.name
            rows, hit_total = fetch_page(
                session, repository.search_query(words, backend=backend), paging, scalars=False
            )
            for row, name in rows:
                hit = service.search_hit(row, name, words)
                hit["lines"] = [
                    {"number": line["number"], "parts": highlight(line["text"], words)}
                    for line in hit["lines"]
                ]
                hits.append(hit)
    failed = state == "failed"
    device_rows: list[Any] = []
    total = 0
    if not q:
        device_rows, total = fetch_page(
            session,
            repository.devices_backup_query(q=(device or "").strip() or None, failed=failed),
            paging,
            scalars=False,
        )
    filters = {"q": q, "device": device or "", "state": "failed" if failed else ""}
    return page(
        request,
        session,
        principal,
        "configurations/index.html",
        status=status,
        q=q,
        hits=hits,
        hit_total=hit_total,
        devices=device_rows,
        total=total,
        paging=paging,
        filters=filters,
        errors=errors,
        good_states=repository.GOOD_STATES,
    )


# -- one device: history, diff, back up now --------------------------------------------------


@router.get("/configurations/devices/{device_id}")
def device_history_page(
    request: Request, device_id: Id, session: DB, principal: Reader, paging: Paging
) -> Response:
    """A device's stored versions, newest first; pick any two to compare."""
    device = service.get_device(session, device_id)
    rows, total = fetch_page(
        session, repository.backups_query(device_id=device_id), paging, scalars=False
    )
    return page(
        request,
        session,
        principal,
        "configurations/device.html",
        device=device,
        versions=[row for row, _ in rows],
        total=total,
        paging=paging,
        filters={},
    )


@router.post("/configurations/devices/{device_id}/backup")
def device_backup_now(
    request: Request, device_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Back up one device now; lands on the run's page to follow it."""
    try:
        run = service.run_backups(
            session, data=BackupRunCreate(device_ids=[device_id]), actor=principal
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect(f"/configurations/devices/{device_id}", exc.message, "error")
    return redirect(f"/jobs/{run.id}", "The backup is queued; this page follows it.")


def _pair(session: DB, device_id: int, a: int | None, b: int | None) -> tuple[int, int]:
    """The two version ids to compare: as given, or the newest and the one before it."""
    if a is not None and b is not None:
        return a, b
    newest = repository.latest_backup(session, device_id)
    if newest is None:
        raise NotFound("no configuration of this device is stored yet", code="no_backup")
    before = repository.previous_backup_id(session, device_id, newest.version)
    if before is None:
        raise NotFound("this device has only one stored version: nothing to compare yet")
    return before, newest.id


@router.get("/configurations/devices/{device_id}/diff")
def device_diff_page(
    request: Request,
    device_id: Id,
    session: DB,
    principal: Reader,
    a: BackupId = None,
    b: BackupId = None,
    view: Literal["split", "unified"] = "split",
) -> Response:
    """Two stored versions side by side or as a unified diff, with sizes and line counts."""
    device = service.get_device(session, device_id)
    first, second = _pair(session, device_id, a, b)
    old, old_name = service.get_backup(session, first)
    new, new_name = service.get_backup(session, second)
    for row in (old, new):
        if row.device_id != device_id:
            raise NotFound(
                f"version {row.id} is not a configuration of {device.name!r}",
                details={"backup_id": row.id},
            )
    if old.version > new.version:  # always older on the left
        old, new, old_name, new_name = new, old, new_name, old_name
    found = service.diff_backups(session, from_id=old.id, to_id=new.id)
    rows = side_by_side(old.content, new.content) if view == "split" else []
    return page(
        request,
        session,
        principal,
        "configurations/diff.html",
        device=device,
        old=old,
        new=new,
        diff=found,
        rows=rows,
        unified=unified_lines(found["diff"]) if view == "unified" else [],
        view=view,
        switch_url=f"/configurations/devices/{device_id}/diff"
        + query_string({"a": old.id, "b": new.id, "view": "unified" if view == "split" else ""}),
    )


# -- one stored version ----------------------------------------------------------------------


@router.get("/configurations/{backup_id}")
def backup_page(request: Request, backup_id: Id, session: DB, principal: Reader) -> Response:
    """One stored configuration with line numbers."""
    row, name = service.get_backup(session, backup_id)
    previous = repository.previous_backup_id(session, row.device_id, row.version)
    return page(
        request,
        session,
        principal,
        "configurations/backup.html",
        backup=row,
        device_name=name,
        lines=row.content.splitlines(),
        previous_id=previous,
    )


@router.get("/configurations/{backup_id}/download")
def backup_download(backup_id: Id, session: DB, _: Reader) -> PlainTextResponse:
    """One stored configuration as a file."""
    row, name = service.get_backup(session, backup_id)
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", f"{name}-v{row.version}.cfg")
    return PlainTextResponse(
        row.content, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
