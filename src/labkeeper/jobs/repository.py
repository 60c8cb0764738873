"""Queries of the jobs domain: runs, their entries, periodic task state and the lease."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from labkeeper.jobs.models import JobLog, JobLogEntry, Lease, PeriodicTaskState

FINISHED = ("succeeded", "partial", "failed", "cancelled")
STATUSES = ("queued", "running", *FINISHED)


def runs_query(
    *,
    status: str | None = None,
    job_type: str | None = None,
    device_id: int | None = None,
    scheduled_job_id: int | None = None,
    since: datetime | None = None,
) -> Select[Any]:
    """Runs matching the filters, newest first."""
    stmt = select(JobLog).order_by(JobLog.id.desc())
    if status:
        stmt = stmt.where(JobLog.status == status)
    if job_type:
        stmt = stmt.where(JobLog.job_type == job_type)
    if device_id is not None:
        stmt = stmt.where(JobLog.device_id == device_id)
    if scheduled_job_id is not None:
        stmt = stmt.where(JobLog.scheduled_job_id == scheduled_job_id)
    if since is not None:
        stmt = stmt.where(JobLog.queued_at >= since)
    return stmt


def run(session: Session, job_log_id: int) -> JobLog | None:
    """One run by id."""
    return session.get(JobLog, job_log_id)


def entries_after(
    session: Session, job_log_id: int, *, after_id: int, limit: int
) -> list[JobLogEntry]:
    """A run's entries with ids above `after_id`, oldest first."""
    stmt = (
        select(JobLogEntry)
        .where(JobLogEntry.job_log_id == job_log_id, JobLogEntry.id > after_id)
        .order_by(JobLogEntry.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def entries_query(job_log_id: int, *, level: str | None = None) -> Select[*tuple[Any, ...]]:
    """A run's entries with their device's name, oldest first, optionally of one level."""
    from labkeeper.inventory.models import Device

    stmt: Select[*tuple[Any, ...]] = (
        select(JobLogEntry, Device.name)
        .outerjoin(Device, Device.id == JobLogEntry.device_id)
        .where(JobLogEntry.job_log_id == job_log_id)
        .order_by(JobLogEntry.id)
    )
    if level:
        stmt = stmt.where(JobLogEntry.level == level)
    return stmt


def job_types(session: Session) -> list[str]:
    """The task names that have runs, for filters."""
    return list(session.scalars(select(JobLog.job_type).distinct().order_by(JobLog.job_type)))


def entry_counts(session: Session, job_log_id: int) -> dict[str, int]:
    """How many entries a run has, by level."""
    stmt = (
        select(JobLogEntry.level, func.count())
        .where(JobLogEntry.job_log_id == job_log_id)
        .group_by(JobLogEntry.level)
    )
    return {level: int(n) for level, n in session.execute(stmt)}


def periodic_states(session: Session) -> dict[str, PeriodicTaskState]:
    """The state rows of the periodic tasks, by name."""
    return {row.name: row for row in session.scalars(select(PeriodicTaskState))}


def periodic_due(session: Session, name: str) -> datetime | None:
    """When a periodic task next falls due (None when it has no state row yet)."""
    return session.scalar(
        select(PeriodicTaskState.next_run_at).where(PeriodicTaskState.name == name)
    )


def lease(session: Session, name: str) -> Lease | None:
    """A lease row by name."""
    return session.get(Lease, name)


def running_runs(session: Session) -> list[JobLog]:
    """Every run marked running (the reaper checks each one's liveness)."""
    return list(
        session.scalars(select(JobLog).where(JobLog.status == "running").order_by(JobLog.id))
    )


def queued_ids(session: Session, *, before: datetime | None = None, limit: int = 1000) -> list[int]:
    """Ids of queued runs (queued before a time, if given), oldest first."""
    stmt = select(JobLog.id).where(JobLog.status == "queued").order_by(JobLog.id).limit(limit)
    if before is not None:
        stmt = stmt.where(JobLog.queued_at < before)
    return list(session.scalars(stmt))


def finished_ids_before(session: Session, before: datetime, *, limit: int) -> list[int]:
    """Ids of finished runs that ended before a time, oldest first."""
    stmt = (
        select(JobLog.id)
        .where(
            JobLog.status.in_(FINISHED),
            func.coalesce(JobLog.finished_at, JobLog.queued_at) < before,
        )
        .order_by(JobLog.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))
