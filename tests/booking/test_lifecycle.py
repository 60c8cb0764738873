"""The lifecycle job: start, end notice, completion, expiry; each transition audited."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from labkeeper.booking import (
    service,
    tasks,  # noqa: F401  (registers booking.lifecycle)
)
from labkeeper.booking.models import Booking
from labkeeper.core.time import utcnow
from labkeeper.jobs import service as jobs
from labkeeper.jobs.engine import run_job
from labkeeper.jobs.models import JobLog
from tests.booking.conftest import at, audit_actions, item, set_setting, statuses


def _ids(made):
    return [b["booking_id"] for b in made["bookings"]]


def test_steps_move_bookings_on_at_their_times(db, lab, make_user, book):
    set_setting(db, "approval.mode", "over_limits")
    set_setting(db, "approval.auto_max_hours", 2)
    alice, bob = make_user("member"), make_user("member")
    r0, r1 = lab.devices[:2]
    confirmed = book(alice, item(r0, 0, 2), item(r1, 0, 2))
    pending = book(bob, item(r0, 3, 6))  # 3 hours: waits for an approver
    waiting = book(alice, item(r0, 4, 5), waitlist=True)
    assert pending["status"] == "PENDING" and waiting["status"] == "CONFLICTING"

    def step(fn, hours):
        with db.scope() as s:
            return fn(s, now=at(hours))

    assert step(service.start_due, -1).rows == 0  # nothing has started yet
    moved = step(service.start_due, 0.5)
    assert (moved.rows, moved.groups) == (2, 1)
    assert statuses(db, *_ids(confirmed)) == ["ACTIVE", "ACTIVE"]
    assert step(service.start_due, 0.6).rows == 0  # moved once only

    # End notice, 15 minutes before the end by default, once.
    assert step(service.send_end_notices, 1.5).rows == 0
    assert step(service.send_end_notices, 1.8).rows == 2
    assert step(service.send_end_notices, 1.9).rows == 0
    with db.scope(write=False) as s:
        assert all(
            b.end_notice_sent_at is not None
            for b in s.scalars(select(Booking).where(Booking.id.in_(_ids(confirmed))))
        )

    assert step(service.complete_due, 2.5).rows == 2
    assert statuses(db, *_ids(confirmed)) == ["COMPLETED", "COMPLETED"]

    # Bob's request was never approved: at its start it expires, which frees the slot for
    # Alice's waitlisted hour that starts later.
    moved = step(service.expire_due, 3.5)
    assert (moved.rows, moved.promoted) == (1, 1)
    assert statuses(db, *_ids(pending), *_ids(waiting)) == ["EXPIRED", "CONFIRMED"]

    actions = [(a.action, a.entity_id, a.actor_username) for a in audit_actions(db, "bookings.")]
    gid = confirmed["grouped_booking_id"]
    assert ("bookings.start", gid, "system") in actions
    assert ("bookings.end_notice", gid, "system") in actions
    assert ("bookings.complete", gid, "system") in actions
    assert ("bookings.expire", pending["grouped_booking_id"], "system") in actions


def test_the_periodic_task_runs_every_step(db, lab, make_user):
    alice = make_user("member")
    r0, r1, r2, r3 = lab.devices[:4]
    now = utcnow()
    rows = {
        "starting": Booking(
            device_id=r0,
            status="CONFIRMED",
            start_time=now - timedelta(minutes=1),
            end_time=now + timedelta(minutes=10),
        ),
        "ending": Booking(
            device_id=r1,
            status="ACTIVE",
            start_time=now - timedelta(hours=2),
            end_time=now - timedelta(minutes=1),
        ),
        "unapproved": Booking(
            device_id=r2,
            status="PENDING",
            start_time=now - timedelta(minutes=1),
            end_time=now + timedelta(hours=1),
        ),
        "future": Booking(
            device_id=r3,
            status="CONFIRMED",
            start_time=now + timedelta(hours=1),
            end_time=now + timedelta(hours=2),
        ),
    }
    with db.scope() as s:
        for name, row in rows.items():
            row.grouped_booking_id = name
            row.user_id = alice.id
            s.add(row)
        s.flush()
        ids = {name: row.id for name, row in rows.items()}
        run_id = jobs.enqueue(s, "booking.lifecycle", params={}).id
    assert run_job(db, run_id) == "succeeded"
    with db.scope(write=False) as s:
        result = s.get(JobLog, run_id).result
    assert result["started"] == 1 and result["completed"] == 1 and result["expired"] == 1
    # The booking that just started ends within 15 minutes: its notice went out too.
    assert result["end_notices"] == 1
    assert statuses(db, *ids.values()) == ["ACTIVE", "COMPLETED", "EXPIRED", "CONFIRMED"]


def test_the_job_runs_only_when_a_booking_is_due_for_a_step(db, lab, make_user, book):
    from labkeeper.jobs.engine import Scheduler

    def due(hours):
        with db.scope(write=False) as s:
            return service.lifecycle_due(s, at(hours))

    def runs():
        with db.scope(write=False) as s:
            return len(
                list(s.scalars(select(JobLog.id).where(JobLog.job_type == "booking.lifecycle")))
            )

    Scheduler(db, tick=1).fire_due(utcnow())
    assert not due(-1) and runs() == 0  # an empty lab: no run, no job log
    r0 = lab.devices[0]
    book(make_user("member"), item(r0, 1, 2))
    assert not due(0.5)  # confirmed, its start has not come
    assert due(1.1)  # to start
    assert due(1.9)  # to be told its end is near (it is still confirmed: to start too)
    assert due(2.5)  # to complete
    with db.scope() as s:
        service.start_due(s, now=at(1.1))
    assert not due(1.2)  # started, end notice not yet due
    with db.scope() as s:
        service.send_end_notices(s, now=at(1.9))
        service.complete_due(s, now=at(2.5))
    assert not due(3)
