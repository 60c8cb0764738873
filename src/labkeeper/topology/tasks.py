"""Background work of topologies: provisioning patches, reconciling switches, re-checking
reviews. The logic lives in `provision.py` and `service.py`; these wrap it for the engine."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from labkeeper.admin import service as settings
from labkeeper.jobs.context import TaskContext
from labkeeper.jobs.registry import periodic
from labkeeper.topology import provision, service

RECHECK_EVERY = timedelta(minutes=1)


def _outcome(result: dict[str, Any], what: str) -> dict[str, Any]:
    failed, errors = result["failed"], result["errors"]
    done = result["added"] + result["removed"]
    if failed or errors:
        status = "partial" if done else "failed"
        switches = ", ".join(sorted(errors)) or "the switch"
        result["status"] = status
        result["message"] = f"{what}: {failed} patch(es) failed on {switches}; retried with backoff"
    return result


@periodic(
    provision.PROVISION_TASK,
    every=lambda s: float(settings.get(s, "optical.provision_interval_seconds")),
    # Bookings that start or end ask for a run themselves (provision.request_provisioning);
    # the periodic look only runs for patches that still differ from the switch (retries).
    when=provision.retry_due,
)
def provision_patches(ctx: TaskContext) -> dict[str, Any]:
    """Apply and remove optical patches as ACTIVE and ended topology bookings require."""
    result = provision.provision(ctx.db, log_fn=ctx.log)
    ctx.progress(
        total=result["added"] + result["removed"] + result["failed"],
        done=result["added"] + result["removed"] + result["failed"],
        changed=result["added"] + result["removed"],
        failed=result["failed"],
    )
    return _outcome(result, "provisioning")


@periodic(
    provision.RECONCILE_TASK,
    every=lambda s: float(settings.get(s, "optical.reconcile_interval_seconds")),
)
def reconcile_switches(ctx: TaskContext) -> dict[str, Any]:
    """Compare every optical switch with the database and converge; report foreign patches."""
    result = provision.reconcile(ctx.db, log_fn=ctx.log)
    ctx.progress(
        total=result["switches"],
        done=result["switches"],
        changed=result["added"] + result["removed"],
        failed=len(result["errors"]),
    )
    return _outcome(result, "reconcile")


@periodic("topology.recheck_reviews", every=RECHECK_EVERY)
def recheck_reviews(ctx: TaskContext) -> dict[str, Any]:
    """Re-compute the conflicts of open topology reviews (bookings and maintenance move)."""
    with ctx.db.scope() as session:
        checked, changed = service.recheck_open_reviews(session)
    if changed:
        ctx.log(
            "info", f"{changed} of {checked} open reviews have new conflicts", category="review"
        )
    ctx.progress(total=checked, done=checked, changed=changed)
    return {"checked": checked, "changed": changed}
