"""Job runs, their live log, and the periodic system tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Query

from labkeeper.auth.deps import Principal, require
from labkeeper.core.db import DbSession
from labkeeper.core.pagination import Page, PageParams, fetch_page, page_params
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import MAX_ID, AwareDatetime, Id
from labkeeper.jobs import repository, service
from labkeeper.jobs.schemas import (
    JobEntryPage,
    JobRunDetail,
    JobRunRead,
    PeriodicTaskRead,
    RunStatus,
)

router = APIRouter()
if TYPE_CHECKING:  # DbSession is built at runtime, which mypy cannot follow
    from sqlalchemy.orm import Session as DB
else:
    DB = DbSession
TaskName = Annotated[str, Path(min_length=1, max_length=100, description="Task name")]


async def _run_filters(
    status: RunStatus | None = None,
    job_type: Annotated[str | None, Query(max_length=100)] = None,
    device_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    scheduled_job_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    since: AwareDatetime | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "job_type": job_type,
        "device_id": device_id,
        "scheduled_job_id": scheduled_job_id,
        "since": since,
    }


@router.get("/jobs/runs", response_model=Page[JobRunRead], tags=["jobs"])
def list_runs(
    session: DB,
    _: Annotated[Principal, Depends(require("jobs:read"))],
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[dict[str, Any], Depends(_run_filters)],
) -> Any:
    """Job runs, newest first, filtered by status, task, device, scheduled job or start time."""
    rows, total = fetch_page(session, repository.runs_query(**filters), page)
    return {"items": rows, "total": total, "limit": page.limit, "offset": page.offset}


@router.get("/jobs/runs/{job_log_id}", response_model=JobRunDetail, tags=["jobs"])
def get_run(
    job_log_id: Id, session: DB, _: Annotated[Principal, Depends(require("jobs:read"))]
) -> Any:
    """One run with its progress counters and how many entries it logged, by level."""
    return service.run_detail(session, job_log_id)


@router.get("/jobs/runs/{job_log_id}/entries", response_model=JobEntryPage, tags=["jobs"])
def run_entries(
    job_log_id: Id,
    session: DB,
    _: Annotated[Principal, Depends(require("jobs:read"))],
    after_id: Annotated[int, Query(ge=0, le=MAX_ID, description="Only entries after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Any:
    """A run's log entries after a cursor, with its status, for live progress polling."""
    return service.entries_page(session, job_log_id=job_log_id, after_id=after_id, limit=limit)


@router.post("/jobs/runs/{job_log_id}/cancel", response_model=JobRunRead, tags=["jobs"])
def cancel_run(
    job_log_id: Id, session: DB, principal: Annotated[Principal, Depends(require("jobs:write"))]
) -> Any:
    """Cancel a queued run, or ask a running one to stop; 409 when it has finished."""
    return service.cancel(session, job_log_id=job_log_id, actor=principal)


@router.get("/jobs/tasks", response_model=list[PeriodicTaskRead], tags=["jobs"])
def list_periodic(session: DB, _: Annotated[Principal, Depends(require("jobs:read"))]) -> Any:
    """The periodic system tasks: interval, last run and next due time."""
    return service.periodic_overview(session)


@router.post("/jobs/tasks/{name}/run", response_model=JobRunRead, status_code=201, tags=["jobs"])
def run_periodic(
    name: TaskName, session: DB, principal: Annotated[Principal, Depends(require("jobs:write"))]
) -> Any:
    """Run a periodic system task now (its schedule is unchanged)."""
    return service.run_periodic_now(session, name=name, actor=principal)
