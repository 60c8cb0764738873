"""Rules of background work: queueing runs, cancelling them, the reaper, periodic firing, leases.

Every change to a run's status is a compare-and-set (`UPDATE ... WHERE status = <expected>`),
so two processes can never both start, finish or fire the same thing.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.orm import Session

from labkeeper.core import audit
from labkeeper.core.audit import Actor
from labkeeper.core.db import after_commit
from labkeeper.core.errors import Invalid, InvalidTransition, NotFound, not_found
from labkeeper.core.time import utcnow
from labkeeper.jobs import registry, repository
from labkeeper.jobs.context import host_name
from labkeeper.jobs.models import JobLog, JobLogEntry, Lease, PeriodicTaskState

NO_SYNC = {"synchronize_session": False}


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _json(params: dict[str, Any]) -> dict[str, Any]:
    try:
        return cast(dict[str, Any], json.loads(json.dumps(params)))
    except (TypeError, ValueError) as exc:
        raise Invalid(f"task parameters must be plain JSON: {exc}", field="params") from None


def enqueue(
    session: Session,
    name: str,
    *,
    params: dict[str, Any],
    actor: Actor | None = None,
    device_id: int | None = None,
    scheduled_job_id: int | None = None,
) -> JobLog:
    """Queue a run of a task in the caller's transaction; it is dispatched once that commits."""
    if registry.get_task(name) is None:
        raise NotFound(
            f"no task called {name!r} is registered", code="unknown_task", details={"task": name}
        )
    run = JobLog(
        job_type=name,
        status="queued",
        params=_json(params),
        device_id=device_id,
        scheduled_job_id=scheduled_job_id,
        created_by=actor.user_id if actor else None,
        queued_at=utcnow(),
    )
    session.add(run)
    session.flush()
    run_id = run.id

    def _dispatch() -> None:
        from labkeeper.jobs.engine import dispatch

        dispatch(run_id)

    after_commit(session, _dispatch)
    return run


def get_run(session: Session, job_log_id: int) -> JobLog:
    """One run, or 404."""
    run = repository.run(session, job_log_id)
    if run is None:
        raise not_found("job run", job_log_id)
    return run


def run_detail(session: Session, job_log_id: int) -> dict[str, Any]:
    """One run with its entry counts by level."""
    run = get_run(session, job_log_id)
    counts = repository.entry_counts(session, job_log_id)
    return {
        **{c.key: getattr(run, c.key) for c in JobLog.__table__.columns},
        "entry_counts": counts,
    }


def entries_page(session: Session, *, job_log_id: int, after_id: int, limit: int) -> dict[str, Any]:
    """A run's entries after a cursor, with the run's status and counters."""
    run = get_run(session, job_log_id)
    items = repository.entries_after(session, job_log_id, after_id=after_id, limit=limit)
    return {
        "items": items,
        "last_id": items[-1].id if items else after_id,
        "more": len(items) == limit,
        "status": run.status,
        "finished": run.status in repository.FINISHED,
        "total": run.total,
        "done": run.done,
        "failed": run.failed,
    }


def cancel(session: Session, *, job_log_id: int, actor: Actor) -> JobLog:
    """Cancel a queued run at once, or ask a running one to stop; audited; 409 when finished."""
    now = utcnow()
    queued = session.execute(
        update(JobLog)
        .where(JobLog.id == job_log_id, JobLog.status == "queued")
        .values(
            status="cancelled",
            finished_at=now,
            cancel_requested=True,
            message=f"cancelled by {actor.username} before it started",
        ),
        execution_options=NO_SYNC,
    )
    how = "cancelled"
    if _rowcount(queued) == 0:
        running = session.execute(
            update(JobLog)
            .where(JobLog.id == job_log_id, JobLog.status == "running")
            .values(cancel_requested=True),
            execution_options=NO_SYNC,
        )
        how = "cancel_requested"
        if _rowcount(running) == 0:
            run = get_run(session, job_log_id)
            raise InvalidTransition(
                f"job run {job_log_id} has already finished ({run.status})",
                details={"status": run.status},
            )
    run = get_run(session, job_log_id)
    session.refresh(run)
    audit.record(
        session,
        actor,
        "jobs.cancel",
        "job_log",
        job_log_id,
        payload={"job_type": run.job_type, "result": how},
    )
    return run


def run_periodic_now(session: Session, *, name: str, actor: Actor) -> JobLog:
    """Queue a periodic system task to run now (its schedule is unchanged); audited."""
    registry.ensure_loaded()
    if name not in registry.PERIODIC:
        raise NotFound(f"there is no periodic task called {name!r}", details={"task": name})
    run = enqueue(session, name, params={}, actor=actor)
    audit.record(session, actor, "jobs.run", "job_log", run.id, payload={"task": name})
    return run


def periodic_overview(session: Session) -> list[dict[str, Any]]:
    """Every periodic task with its interval and when it last ran and next falls due."""
    registry.ensure_loaded()
    states = repository.periodic_states(session)
    out = []
    for name, pdef in sorted(registry.PERIODIC.items()):
        state = states.get(name)
        out.append(
            {
                "name": name,
                "description": registry.TASKS[name].description,
                "every_seconds": pdef.interval(session).total_seconds(),
                "next_run_at": state.next_run_at if state else None,
                "last_run_at": state.last_run_at if state else None,
                "last_job_log_id": state.last_job_log_id if state else None,
            }
        )
    return out


# -- running a run --------------------------------------------------------------------------


def claim_run(session: Session, *, job_log_id: int, worker: str) -> JobLog | None:
    """Take a queued run for this worker (atomically); None when someone else has it."""
    now = utcnow()
    result = session.execute(
        update(JobLog)
        .where(JobLog.id == job_log_id, JobLog.status == "queued")
        .values(
            status="running",
            started_at=now,
            heartbeat_at=now,
            worker=worker,
            attempts=JobLog.attempts + 1,
        ),
        execution_options=NO_SYNC,
    )
    if _rowcount(result) != 1:
        return None
    run = get_run(session, job_log_id)
    session.refresh(run)
    return run


def finish_run(
    session: Session,
    *,
    job_log_id: int,
    worker: str,
    status: str,
    message: str | None,
    result: dict[str, Any] | None,
    counters: dict[str, int],
) -> bool:
    """Record how a run ended, unless it is no longer this worker's (e.g. reaped meanwhile)."""
    changed = session.execute(
        update(JobLog)
        .where(JobLog.id == job_log_id, JobLog.status == "running", JobLog.worker == worker)
        .values(status=status, message=message, result=result, finished_at=utcnow(), **counters),
        execution_options=NO_SYNC,
    )
    return _rowcount(changed) == 1


def cancel_requested(session: Session, job_log_id: int) -> bool:
    """Whether a cancel was requested for a run."""
    run = repository.run(session, job_log_id)
    return bool(run and run.cancel_requested)


# -- the reaper -----------------------------------------------------------------------------


def _pid_gone(worker: str | None) -> bool:
    # Only a process on this machine can be checked; elsewhere the heartbeat decides.
    if not worker:
        return False
    parts = worker.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host_name() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap(
    session: Session,
    *,
    stale_after: timedelta,
    gone_after: timedelta,
    requeue_after: timedelta,
    now: datetime | None = None,
) -> dict[str, list[int]]:
    """Fail runs whose worker stopped beating or is gone; re-dispatch runs nobody picked up."""
    now = now or utcnow()
    failed: list[int] = []
    for run in repository.running_runs(session):
        beat = run.heartbeat_at or run.started_at or run.queued_at
        if beat < now - stale_after:
            message = (
                f"worker {run.worker} stopped sending heartbeats "
                f"(last at {beat.isoformat(timespec='seconds')}); presumed dead"
            )
        elif beat < now - gone_after and _pid_gone(run.worker):
            message = f"worker process {run.worker} is gone; the run was interrupted"
        else:
            continue
        changed = session.execute(
            update(JobLog)
            .where(JobLog.id == run.id, JobLog.status == "running", JobLog.worker == run.worker)
            .values(status="failed", finished_at=now, message=message),
            execution_options=NO_SYNC,
        )
        if _rowcount(changed) == 1:
            session.add(
                JobLogEntry(
                    job_log_id=run.id,
                    level="error",
                    category="reaper",
                    message=message,
                    created_at=now,
                )
            )
            failed.append(run.id)
    requeued = repository.queued_ids(session, before=now - requeue_after, limit=500)

    def _redispatch() -> None:
        from labkeeper.jobs.engine import dispatch

        for run_id in requeued:
            dispatch(run_id)

    if requeued:
        after_commit(session, _redispatch)
    session.flush()
    return {"failed": failed, "requeued": requeued}


def cleanup(session: Session, *, older_than: datetime, batch: int = 1000) -> int:
    """Delete finished runs (and their entries) that ended before a time; returns how many."""
    ids = repository.finished_ids_before(session, older_than, limit=batch)
    if not ids:
        return 0
    # Entries explicitly: not every backend is guaranteed to cascade on a bulk delete.
    session.execute(
        delete(JobLogEntry).where(JobLogEntry.job_log_id.in_(ids)), execution_options=NO_SYNC
    )
    session.execute(
        update(PeriodicTaskState)
        .where(PeriodicTaskState.last_job_log_id.in_(ids))
        .values(last_job_log_id=None),
        execution_options=NO_SYNC,
    )
    session.execute(delete(JobLog).where(JobLog.id.in_(ids)), execution_options=NO_SYNC)
    session.flush()
    return len(ids)


# -- the scheduler lease and periodic tasks --------------------------------------------------


def renew_lease(
    session: Session, *, name: str, holder: str, seconds: float, now: datetime | None = None
) -> bool:
    """Extend the lease if `holder` has it or it has expired; False when another holds it."""
    now = now or utcnow()
    changed = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < now))
        .values(holder=holder, expires_at=now + timedelta(seconds=seconds)),
        execution_options=NO_SYNC,
    )
    return _rowcount(changed) == 1


def create_lease(
    session: Session, *, name: str, holder: str, seconds: float, now: datetime | None = None
) -> None:
    """Insert the lease row for `holder` (IntegrityError when another process was first)."""
    now = now or utcnow()
    session.add(Lease(name=name, holder=holder, expires_at=now + timedelta(seconds=seconds)))
    session.flush()


def release_lease(session: Session, *, name: str, holder: str) -> bool:
    """Give the lease up at once so another process may take it on its next tick."""
    changed = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=utcnow() - timedelta(seconds=1)),
        execution_options=NO_SYNC,
    )
    return _rowcount(changed) == 1


def ensure_periodic_state(session: Session, *, name: str, first_run_at: datetime) -> None:
    """Insert a periodic task's state row (IntegrityError when another process was first)."""
    session.add(PeriodicTaskState(name=name, next_run_at=first_run_at))
    session.flush()


# Clocks of the machines taking turns with the lease may differ this much.
CLOCK_SKEW = timedelta(seconds=60)


def is_due(next_run_at: datetime, *, now: datetime, every: timedelta) -> bool:
    """Whether a periodic task is due: its time has come, or its interval shrank meanwhile."""
    return next_run_at <= now or next_run_at > now + every + CLOCK_SKEW


def fire_periodic(
    session: Session, *, name: str, every: timedelta, holder: str, now: datetime | None = None
) -> JobLog | None:
    """Queue the due run of a periodic task, exactly once per due time (compare-and-set)."""
    now = now or utcnow()
    due = repository.periodic_due(session, name)
    if due is None or not is_due(due, now=now, every=every):
        return None
    following = due + every if due <= now else now + every
    if following <= now:
        # Fell behind (everything was down): skip the missed runs instead of firing a burst.
        following = now + every
    changed = session.execute(
        update(PeriodicTaskState)
        .where(PeriodicTaskState.name == name, PeriodicTaskState.next_run_at == due)
        .values(next_run_at=following, last_run_at=now),
        execution_options=NO_SYNC,
    )
    if _rowcount(changed) != 1:
        return None
    run = enqueue(session, name, params={})
    session.add(
        JobLogEntry(
            job_log_id=run.id,
            level="info",
            category="scheduler",
            created_at=now,
            message=f"periodic run due at {due.isoformat()} fired by {holder}",
            details={"due": due.isoformat(), "holder": holder},
        )
    )
    session.execute(
        update(PeriodicTaskState)
        .where(PeriodicTaskState.name == name)
        .values(last_job_log_id=run.id),
        execution_options=NO_SYNC,
    )
    session.flush()
    return run
