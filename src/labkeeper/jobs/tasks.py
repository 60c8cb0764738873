"""Background work of the jobs domain itself: the reaper and log retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from labkeeper.admin import service as settings
from labkeeper.core.time import utcnow
from labkeeper.jobs import service
from labkeeper.jobs.context import HEARTBEAT_SECONDS, TaskContext
from labkeeper.jobs.registry import periodic


@periodic("jobs.reap", every=timedelta(seconds=60))
def reap(
    ctx: TaskContext,
    *,
    stale_seconds: float = 60,
    gone_seconds: float = 3 * HEARTBEAT_SECONDS,
    requeue_seconds: float = 60,
) -> dict[str, Any]:
    """Fail runs whose worker died and re-dispatch queued runs nobody picked up."""
    with ctx.db.scope() as s:
        found = service.reap(
            s,
            stale_after=timedelta(seconds=stale_seconds),
            gone_after=timedelta(seconds=gone_seconds),
            requeue_after=timedelta(seconds=requeue_seconds),
        )
    for run_id in found["failed"]:
        ctx.log(
            "warning",
            f"job run {run_id} marked failed: its worker is gone",
            category="reaper",
            details={"job_log_id": run_id},
        )
    if found["requeued"]:
        ctx.log(
            "info",
            f"re-dispatched {len(found['requeued'])} queued runs nobody picked up",
            category="reaper",
            details={"job_log_ids": found["requeued"][:100]},
        )
    return {"failed": len(found["failed"]), "requeued": len(found["requeued"])}


@periodic("jobs.cleanup", every=timedelta(days=1))
def cleanup(ctx: TaskContext) -> dict[str, Any]:
    """Delete job logs older than the jobs.log_retention_days setting."""
    with ctx.db.scope(write=False) as s:
        days = int(settings.get(s, "jobs.log_retention_days"))
    cutoff = utcnow() - timedelta(days=days)
    deleted = 0
    # Small batches in their own transactions: no long lock on a big table.
    while not ctx.cancelled():
        with ctx.db.scope() as s:
            count = service.cleanup(s, older_than=cutoff)
        deleted += count
        ctx.progress(done=deleted)
        if count == 0:
            break
    ctx.log(
        "info",
        f"deleted {deleted} job runs that ended before {cutoff.isoformat()}",
        category="retention",
    )
    return {"deleted": deleted, "before": cutoff.isoformat()}
