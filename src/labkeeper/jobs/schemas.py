"""Bodies of the jobs API: runs, their entries and the periodic tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from labkeeper.core.schemas import Read

RunStatus = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]


class JobRunRead(Read):
    id: int
    job_type: str
    status: str
    params: dict[str, Any] | None
    result: dict[str, Any] | None
    message: str | None
    scheduled_job_id: int | None
    device_id: int | None
    created_by: int | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    attempts: int
    cancel_requested: bool
    total: int
    done: int
    changed: int
    unchanged: int
    failed: int


class JobRunDetail(JobRunRead):
    entry_counts: dict[str, int]


class JobEntryRead(Read):
    id: int
    job_log_id: int
    created_at: datetime
    level: str
    category: str | None
    device_id: int | None
    message: str
    details: dict[str, Any] | None


class JobEntryPage(Read):
    """Entries after a cursor, with the run's state, for live progress polling."""

    items: list[JobEntryRead]
    last_id: int
    more: bool
    status: str
    finished: bool
    total: int
    done: int
    failed: int


class PeriodicTaskRead(Read):
    name: str
    description: str
    every_seconds: float
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_log_id: int | None
