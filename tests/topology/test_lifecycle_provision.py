"""The booking lifecycle drives the switch: a topology group that starts, ends or is cancelled
while active asks for a provisioning run at once, and the periodic look only fires a run (and
writes a job log) when a patch still waits for a retry."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from labkeeper.booking import service as bookings
from labkeeper.core.time import utcnow
from labkeeper.jobs.engine import Scheduler, run_job
from labkeeper.jobs.models import JobLog
from labkeeper.topology import provision
from labkeeper.topology.models import CrossConnect
from tests.topology.conftest import (
    book_topology,
    end_now,
    in_port,
    ok,
    out_port,
    patches,
    soon,
    start_now,
)


def _queued(db) -> list[int]:
    with db.scope(write=False) as s:
        return list(
            s.scalars(
                select(JobLog.id).where(
                    JobLog.job_type == provision.PROVISION_TASK, JobLog.status == "queued"
                )
            )
        )


def _run_queued(db) -> None:
    [run_id] = _queued(db)
    run_job(db, run_id)


def _provision_runs(db) -> int:
    with db.scope(write=False) as s:
        return len(
            list(s.scalars(select(JobLog.id).where(JobLog.job_type == provision.PROVISION_TASK)))
        )


def test_start_and_end_of_a_topology_booking_patch_and_unpatch_the_switch(
    db, lab, sim, make_user, as_user
):
    owner = as_user(make_user("member"))
    _, gid = book_topology(owner, lab, ["d1", "d2", "d3"])
    assert _queued(db) == []  # confirmed, not started: nothing to patch yet

    start_now(db, gid)  # the lifecycle job's step
    _run_queued(db)
    assert sim.cross_connects == {out_port(1): in_port(2), out_port(2): in_port(3)}
    assert [r.actual_state for r in patches(db, gid)] == ["present", "present"]

    end_now(db, gid)
    _run_queued(db)
    assert sim.cross_connects == {}
    assert [r.actual_state for r in patches(db, gid)] == ["absent", "absent"]


def test_cancelling_an_active_topology_booking_unpatches_it(db, lab, sim, make_user, as_user):
    owner = as_user(make_user("member"))
    _, gid = book_topology(owner, lab, ["d1", "d2"])
    start_now(db, gid)
    _run_queued(db)
    assert sim.cross_connects == {out_port(1): in_port(2)}

    ok(owner.post(f"/bookings/groups/{gid}/cancel", {"reason": "done early"}))
    _run_queued(db)
    assert sim.cross_connects == {}


def test_bookings_without_a_topology_ask_for_no_run(db, lab, make_user, as_user):
    member = as_user(make_user("member"))
    end = (utcnow() + timedelta(hours=1)).isoformat()
    item = {"device_id": lab["d1"], "start": soon().isoformat(), "end": end}
    ok(member.post("/bookings", {"items": [item]}), 201)
    with db.scope() as s:
        assert bookings.start_due(s).rows == 1
    with db.scope() as s:
        assert bookings.complete_due(s, now=utcnow() + timedelta(days=1)).rows == 1
    assert _queued(db) == []


def test_the_periodic_look_fires_only_for_a_patch_waiting_to_be_retried(
    db, lab, sim, make_user, as_user
):
    scheduler = Scheduler(db, tick=1)
    now = utcnow()
    scheduler.fire_due(now)
    assert _provision_runs(db) == 0  # nothing to do: no run, no job log

    owner = as_user(make_user("member"))
    _, gid = book_topology(owner, lab, ["d1", "d2"])
    start_now(db, gid)
    sim.refuse_edits("OPTICAL PORT 2 SHUTTER CLOSED")
    _run_queued(db)
    [row] = patches(db, gid)
    assert row.actual_state == "absent" and row.next_attempt_at is not None
    runs = _provision_runs(db)

    with db.scope() as s:  # a long backoff: due by the clock, but the patch must wait
        s.execute(update(CrossConnect).values(next_attempt_at=utcnow() + timedelta(hours=1)))
    scheduler.fire_due(now + timedelta(seconds=3))
    assert _provision_runs(db) == runs

    sim.mode = "normal"
    with db.scope() as s:
        s.execute(update(CrossConnect).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    scheduler.fire_due(utcnow() + timedelta(seconds=6))
    assert _provision_runs(db) == runs + 1
    _run_queued(db)
    assert sim.cross_connects == {out_port(1): in_port(2)}
