"""Credentials, stored configurations (history, diff, search), backup runs and scheduled jobs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import AfterValidator

from labkeeper.auth.deps import Principal, require
from labkeeper.backups import repository, service
from labkeeper.backups.schemas import (
    BackupDetail,
    BackupRead,
    BackupRunCreate,
    CandidateRead,
    CredentialCreate,
    CredentialRead,
    CredentialUpdate,
    DiffRead,
    JobType,
    ScheduledJobCreate,
    ScheduledJobRead,
    ScheduledJobUpdate,
    SearchHit,
    single_line,
)
from labkeeper.core.db import Database, DbSession
from labkeeper.core.pagination import Page, PageParams, fetch_page, page_params
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import MAX_ID, AwareDatetime, Id
from labkeeper.jobs import service as jobs
from labkeeper.jobs.schemas import JobEntryRead, JobRunRead

router = APIRouter()
if TYPE_CHECKING:  # DbSession is built at run time; to mypy it is a plain Session.
    from sqlalchemy.orm import Session as DB
else:
    DB = DbSession
CredReader = Annotated[Principal, Depends(require("credentials:read"))]
CredWriter = Annotated[Principal, Depends(require("credentials:write"))]
BackupReader = Annotated[Principal, Depends(require("backups:read"))]
BackupWriter = Annotated[Principal, Depends(require("backups:write"))]
JobReader = Annotated[Principal, Depends(require("jobs:read"))]
JobWriter = Annotated[Principal, Depends(require("jobs:write"))]
Paging = Annotated[PageParams, Depends(page_params)]
Text100 = Annotated[
    str | None, Query(max_length=100), AfterValidator(lambda v: v and single_line(v))
]
Version = Annotated[int | None, Query(ge=1, le=MAX_ID)]
# How long one progress stream stays open, how often it looks for news, and how soon the
# browser reconnects once a stream closes before the run ended.
STREAM_SECONDS = 300
STREAM_POLL_SECONDS = 0.5
RETRY_MS = 2000


def _page(items: list[Any], total: int, page: PageParams) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset}


# -- credentials -------------------------------------------------------------------------------


@router.get("/credentials", response_model=Page[CredentialRead], tags=["credentials"])
def list_credentials(
    session: DB, _: CredReader, page: Paging, q: Text100 = None, tag: Text100 = None
) -> Any:
    """Credentials with their tags and counters (never a secret)."""
    rows, total = fetch_page(session, repository.credentials_query(q=q, tag=tag), page)
    return _page(service.credential_views(session, rows), total, page)


@router.post("/credentials", response_model=CredentialRead, status_code=201, tags=["credentials"])
def create_credential(body: CredentialCreate, session: DB, principal: CredWriter) -> Any:
    """Store a credential; its secrets are encrypted and never shown again."""
    row = service.create_credential(session, data=body, actor=principal)
    return service.credential_detail(session, row.id)


@router.get("/credentials/{credential_id}", response_model=CredentialRead, tags=["credentials"])
def get_credential(credential_id: Id, session: DB, _: CredReader) -> Any:
    """One credential with its tags and counters (never a secret)."""
    return service.credential_detail(session, credential_id)


@router.patch("/credentials/{credential_id}", response_model=CredentialRead, tags=["credentials"])
def update_credential(
    credential_id: Id, body: CredentialUpdate, session: DB, principal: CredWriter
) -> Any:
    """Change a credential; secrets given replace the stored ones, tags replace all links."""
    service.update_credential(session, credential_id=credential_id, data=body, actor=principal)
    return service.credential_detail(session, credential_id)


@router.delete("/credentials/{credential_id}", status_code=204, tags=["credentials"])
def delete_credential(credential_id: Id, session: DB, principal: CredWriter) -> Response:
    """Delete a credential and its tag links."""
    service.delete_credential(session, credential_id=credential_id, actor=principal)
    return Response(status_code=204)


@router.get(
    "/devices/{device_id}/credentials",
    response_model=list[CandidateRead],
    tags=["credentials"],
)
def device_candidates(device_id: Id, session: DB, _: CredReader) -> Any:
    """The credentials a backup of this device tries, in order (the last good one first)."""
    return service.device_candidates(session, device_id)


# -- stored configurations ---------------------------------------------------------------------


@router.get("/backups", response_model=Page[BackupRead], tags=["backups"])
def list_backups(
    session: DB,
    _: BackupReader,
    page: Paging,
    device_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    latest_only: bool = False,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> Any:
    """Stored versions, newest first (their text is in GET /backups/{id})."""
    rows, total = fetch_page(
        session,
        repository.backups_query(
            device_id=device_id, latest_only=latest_only, since=since, until=until
        ),
        page,
        scalars=False,
    )
    return _page([service.backup_view(r, name) for r, name in rows], total, page)


@router.get("/backups/search", response_model=Page[SearchHit], tags=["backups"])
def search_backups(
    session: DB,
    _: BackupReader,
    page: Paging,
    q: Annotated[str, Query(min_length=1, max_length=200), AfterValidator(single_line)],
    device_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Any:
    """Devices whose newest configuration holds every word, with the matching lines."""
    words = service.search_words(q)
    backend = session.get_bind().dialect.name
    rows, total = fetch_page(
        session,
        repository.search_query(words, backend=backend, device_id=device_id),
        page,
        scalars=False,
    )
    return _page([service.search_hit(r, name, words) for r, name in rows], total, page)


@router.get("/backups/diff", response_model=DiffRead, tags=["backups"])
def diff_backups(
    session: DB,
    _: BackupReader,
    from_id: Annotated[int, Query(ge=1, le=MAX_ID, description="Older version's id")],
    to_id: Annotated[int, Query(ge=1, le=MAX_ID, description="Newer version's id")],
) -> Any:
    """Unified diff between any two stored versions."""
    return service.diff_backups(session, from_id=from_id, to_id=to_id)


@router.post("/backups/runs", response_model=JobRunRead, status_code=202, tags=["backups"])
def run_backups(body: BackupRunCreate, session: DB, principal: BackupWriter) -> Any:
    """Collect now: devices by id and/or tag, or every device when the body names none."""
    return service.run_backups(session, data=body, actor=principal)


@router.get(
    "/backups/runs/{job_log_id}/devices", response_model=list[JobEntryRead], tags=["backups"]
)
def run_devices(job_log_id: Id, session: DB, _: JobReader) -> Any:
    """One result entry per device of a backup run (status, credential, duration, failure)."""
    jobs.get_run(session, job_log_id)
    return repository.device_entries(session, job_log_id)


@router.get("/backups/runs/{job_log_id}/stream", tags=["backups"], response_class=StreamingResponse)
def stream_run(
    job_log_id: Id,
    request: Request,
    session: DB,
    _: JobReader,
    after_id: Annotated[int, Query(ge=0, le=MAX_ID, description="Only entries after this id")] = 0,
) -> StreamingResponse:
    """Live progress of a run as server-sent events: `entry`, `progress`, then `end`.

    A stream follows a running run until it finishes; for a run still queued it sends the state
    and closes with a `retry` hint, and EventSource reconnects (resuming after Last-Event-ID).
    """
    jobs.get_run(session, job_log_id)
    last_event = request.headers.get("last-event-id", "")
    if last_event.isdigit() and int(last_event) <= MAX_ID:
        after_id = max(after_id, int(last_event))
    db: Database = request.app.state.db
    return StreamingResponse(
        _events(db, job_log_id, after_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _events(db: Database, job_log_id: int, after: int) -> Iterator[str]:
    started = time.monotonic()
    while True:
        with db.scope(write=False) as s:
            page = jobs.entries_page(s, job_log_id=job_log_id, after_id=after, limit=500)
            counters = repository.run_counters(s, job_log_id) or {}
        for entry in page["items"]:
            data = JobEntryRead.model_validate(entry).model_dump(mode="json")
            yield f"id: {entry.id}\nevent: entry\ndata: {json.dumps(data)}\n\n"
        after = page["last_id"]
        state = {"status": page["status"], **counters}
        yield f"event: progress\ndata: {json.dumps(state)}\n\n"
        if page["more"]:
            continue
        if page["finished"]:
            yield f"event: end\ndata: {json.dumps(state)}\n\n"
            return
        if page["status"] == "queued" or time.monotonic() - started > STREAM_SECONDS:
            yield f"retry: {RETRY_MS}\n\n"
            return
        time.sleep(STREAM_POLL_SECONDS)


@router.get("/backups/{backup_id}", response_model=BackupDetail, tags=["backups"])
def get_backup(backup_id: Id, session: DB, _: BackupReader) -> Any:
    """One stored version with its configuration text."""
    row, name = service.get_backup(session, backup_id)
    return service.backup_view(row, name, content=True)


@router.get("/backups/{backup_id}/raw", response_class=PlainTextResponse, tags=["backups"])
def get_backup_text(backup_id: Id, session: DB, _: BackupReader) -> PlainTextResponse:
    """One stored version as plain text (to save or restore by hand)."""
    row, name = service.get_backup(session, backup_id)
    filename = f"{name}-v{row.version}.cfg".replace('"', "")
    return PlainTextResponse(
        row.content, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/devices/{device_id}/backups", response_model=Page[BackupRead], tags=["backups"])
def device_history(device_id: Id, session: DB, _: BackupReader, page: Paging) -> Any:
    """A device's stored versions, newest first."""
    service.get_device(session, device_id)
    rows, total = fetch_page(
        session, repository.backups_query(device_id=device_id), page, scalars=False
    )
    return _page([service.backup_view(r, name) for r, name in rows], total, page)


@router.get("/devices/{device_id}/backups/latest", response_model=BackupDetail, tags=["backups"])
def device_latest(device_id: Id, session: DB, _: BackupReader) -> Any:
    """A device's newest stored configuration."""
    return service.latest_backup(session, device_id)


@router.get("/devices/{device_id}/backups/diff", response_model=DiffRead, tags=["backups"])
def device_diff(
    device_id: Id,
    session: DB,
    _: BackupReader,
    from_version: Version = None,
    to_version: Version = None,
) -> Any:
    """Unified diff between two versions of a device (default: the newest and the one before)."""
    return service.diff_device(
        session, device_id=device_id, from_version=from_version, to_version=to_version
    )


# -- scheduled jobs ----------------------------------------------------------------------------


@router.get("/scheduled-jobs", response_model=Page[ScheduledJobRead], tags=["scheduled jobs"])
def list_scheduled_jobs(
    session: DB,
    _: JobReader,
    page: Paging,
    enabled: bool | None = None,
    job_type: JobType | None = None,
    q: Text100 = None,
) -> Any:
    """Scheduled jobs with their targets and next run, by name."""
    rows, total = fetch_page(
        session,
        repository.scheduled_jobs_query(enabled=enabled, job_type=job_type, q=q),
        page,
        scalars=False,
    )
    return _page(service.scheduled_job_views(session, rows), total, page)


@router.post(
    "/scheduled-jobs", response_model=ScheduledJobRead, status_code=201, tags=["scheduled jobs"]
)
def create_scheduled_job(body: ScheduledJobCreate, session: DB, principal: JobWriter) -> Any:
    """Create a scheduled backup or reachability job; times are in the lab's time zone."""
    job = service.create_scheduled_job(session, data=body, actor=principal)
    return service.scheduled_job_detail(session, job.id)


@router.get("/scheduled-jobs/{job_id}", response_model=ScheduledJobRead, tags=["scheduled jobs"])
def get_scheduled_job(job_id: Id, session: DB, _: JobReader) -> Any:
    """One scheduled job with its next run."""
    return service.scheduled_job_detail(session, job_id)


@router.patch("/scheduled-jobs/{job_id}", response_model=ScheduledJobRead, tags=["scheduled jobs"])
def update_scheduled_job(
    job_id: Id, body: ScheduledJobUpdate, session: DB, principal: JobWriter
) -> Any:
    """Change a scheduled job; the new schedule applies at once."""
    service.update_scheduled_job(session, job_id=job_id, data=body, actor=principal)
    return service.scheduled_job_detail(session, job_id)


@router.delete("/scheduled-jobs/{job_id}", status_code=204, tags=["scheduled jobs"])
def delete_scheduled_job(job_id: Id, session: DB, principal: JobWriter) -> Response:
    """Delete a scheduled job; it never fires again."""
    service.delete_scheduled_job(session, job_id=job_id, actor=principal)
    return Response(status_code=204)


@router.post(
    "/scheduled-jobs/{job_id}/enable", response_model=ScheduledJobRead, tags=["scheduled jobs"]
)
def enable_scheduled_job(job_id: Id, session: DB, principal: JobWriter) -> Any:
    """Enable a scheduled job (its next run is computed from now)."""
    service.set_enabled(session, job_id=job_id, enabled=True, actor=principal)
    return service.scheduled_job_detail(session, job_id)


@router.post(
    "/scheduled-jobs/{job_id}/disable", response_model=ScheduledJobRead, tags=["scheduled jobs"]
)
def disable_scheduled_job(job_id: Id, session: DB, principal: JobWriter) -> Any:
    """Disable a scheduled job; it keeps its settings but does not fire."""
    service.set_enabled(session, job_id=job_id, enabled=False, actor=principal)
    return service.scheduled_job_detail(session, job_id)


@router.post(
    "/scheduled-jobs/{job_id}/run",
    response_model=JobRunRead,
    status_code=202,
    tags=["scheduled jobs"],
)
def run_scheduled_job(job_id: Id, session: DB, principal: JobWriter) -> Any:
    """Run a scheduled job now; its schedule is unchanged."""
    return service.run_scheduled_job_now(session, job_id=job_id, actor=principal)
