"""Background work of bookings: the lifecycle job (expire, start, complete, end notices)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from labkeeper.booking import service
from labkeeper.jobs.context import TaskContext
from labkeeper.jobs.registry import periodic

BATCH = 500
# A run moves at most this many batches per step; the rest waits for the next run.
MAX_BATCHES = 100


# Looked at every 10 s, so a booking starts (and its topology is patched) within seconds of its
# start; a run, and its job log, happens only when some booking is due for a step.
@periodic("booking.lifecycle", every=timedelta(seconds=10), when=service.lifecycle_due)
def lifecycle(ctx: TaskContext) -> dict[str, Any]:
    """Expire unapproved or waitlisted bookings at their start, start confirmed ones, complete
    ended ones and send end notices; every transition is audited."""
    totals: dict[str, Any] = {}
    for name, step in service.LIFECYCLE_STEPS.items():
        rows = groups = promoted = 0
        for _ in range(MAX_BATCHES):
            with ctx.db.scope() as session:
                moved = step(session, limit=BATCH)
            rows, groups, promoted = (
                rows + moved.rows,
                groups + moved.groups,
                promoted + moved.promoted,
            )
            if moved.rows < BATCH:
                break
        totals[name] = rows
        if promoted:
            totals["promoted"] = totals.get("promoted", 0) + promoted
        if rows:
            ctx.log(
                "info",
                f"{name}: {rows} bookings in {groups} groups",
                category="lifecycle",
                details={"rows": rows, "groups": groups, "promoted": promoted},
            )
    done = sum(v for v in totals.values())
    ctx.progress(total=done, done=done, changed=done)
    return totals
