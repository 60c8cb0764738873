"""Creating booking groups: all or nothing, conflicts, the waitlist, policy and bad input."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from labkeeper.booking.models import Booking, BookingCollaborator
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import MaintenanceWindow
from tests.booking.conftest import (
    API,
    at,
    audit_actions,
    iso,
    item,
    set_approval_limits,
    set_setting,
)


def _rows(db):
    with db.scope(write=False) as s:
        return list(s.scalars(select(Booking).order_by(Booking.id)))


def test_a_group_is_made_whole_with_collaborators_and_one_audit_row(
    client, db, lab, make_user, book
):
    owner, friend, stranger = make_user("member"), make_user("member"), make_user("member")
    r0, r1 = lab.devices[:2]
    made = book(
        owner,
        item(r0, 0, 2),
        item(r1, 0, 2),
        comment="fibre test",
        collaborators=[friend.username.upper()],  # usernames are matched ignoring case
    )
    assert made["status"] == "CONFIRMED"
    gid = made["grouped_booking_id"]
    assert [(b["device_id"], b["status"]) for b in made["bookings"]] == [
        (r0, "CONFIRMED"),
        (r1, "CONFIRMED"),
    ]
    assert made["bookings"][0]["start"].startswith(at(0).strftime("%Y-%m-%dT%H:%M"))
    rows = _rows(db)
    assert {(r.device_id, r.user_id, r.grouped_booking_id, r.comment) for r in rows} == {
        (r0, owner.id, gid, "fibre test"),
        (r1, owner.id, gid, "fibre test"),
    }
    with db.scope(write=False) as s:
        assert list(s.scalars(select(BookingCollaborator.user_id))) == [friend.id]
    (entry,) = audit_actions(db, "bookings.")
    assert (entry.action, entry.entity_type, entry.entity_id) == (
        "bookings.create",
        "booking_group",
        gid,
    )
    assert entry.actor_id == owner.id and entry.payload["collaborators"] == [friend.username]

    # The collaborator sees the group; someone else does not.
    seen = client.get(f"{API}/bookings/groups/{gid}", headers=friend.headers)
    assert seen.status_code == 200, seen.text
    assert seen.json()["collaborators"] == [friend.username]
    assert {b["device_name"] for b in seen.json()["bookings"]} == {"r0", "r1"}
    denied = client.get(f"{API}/bookings/groups/{gid}", headers=stranger.headers)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "not_your_booking"


def test_a_collision_is_a_409_naming_it_and_nothing_is_written(db, lab, make_user, book):
    alice, bob = make_user("member"), make_user("member")
    r0, r1, r2 = lab.devices[:3]
    first = book(alice, item(r0, 0, 2))
    with db.scope() as s:
        s.add(
            MaintenanceWindow(device_id=r1, start_time=at(1), end_time=at(3), reason="new optics")
        )
    before = len(_rows(db))

    refused = book(bob, item(r2, 0, 2), item(r0, 1, 3), item(r1, 2, 4), expect=409)
    error = refused["error"]
    assert error["code"] == "booking_conflict"
    conflicts = sorted(error["details"]["conflicts"], key=lambda c: c["item"])
    assert [(c["item"], c["kind"], c["device_id"]) for c in conflicts] == [
        (1, "booking", r0),
        (2, "maintenance", r1),
    ]
    assert conflicts[0]["booking_id"] == first["bookings"][0]["booking_id"]
    assert conflicts[0]["grouped_booking_id"] == first["grouped_booking_id"]
    assert conflicts[1]["reason"] == "new optics"
    assert len(_rows(db)) == before  # not even the free device r2

    # Touching is not overlapping: [0, 2) and [2, 3) share no instant.
    book(bob, item(r0, 2, 3), item(r2, 0, 2))


def test_the_waitlist_keeps_conflicting_rows(db, lab, make_user, book):
    alice, bob = make_user("member"), make_user("member")
    r0, r1 = lab.devices[:2]
    book(alice, item(r0, 0, 2))
    listed = book(bob, item(r0, 1, 2), item(r1, 1, 2), waitlist=True)
    assert listed["status"] == "CONFLICTING"
    assert [b["status"] for b in listed["bookings"]] == ["CONFLICTING", "CONFIRMED"]
    # A waitlisted row holds nothing: a third request still collides only with alice.
    carol = make_user("member")
    error = book(carol, item(r0, 0, 1), expect=409)["error"]
    assert {c["booking_id"] for c in error["details"]["conflicts"]} == {_rows(db)[0].id}


def test_bad_input_is_refused_with_its_own_code(client, db, lab, make_user, book):
    member = make_user("member")
    viewer = make_user("viewer")
    r0, r1 = lab.devices[:2]
    now = utcnow()
    set_setting(db, "booking.max_duration_hours", 10)
    set_setting(db, "booking.max_notice_days", 30)

    def code(body, account=member, status=422):
        r = client.post(f"{API}/bookings", json=body, headers=account.headers)
        assert r.status_code == status, (body, r.text)
        return r.json()["error"]["code"]

    assert code({"items": [item(r0, 2, 1)]}) == "invalid_time_range"
    assert code({"items": [item(r0, 2, 2)]}) == "invalid_time_range"
    naive = {"device_id": r0, "start": at(0).replace(tzinfo=None).isoformat(), "end": iso(1)}
    r = client.post(f"{API}/bookings", json={"items": [naive]}, headers=member.headers)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
    assert r.json()["error"]["details"]["errors"][0]["field"] == "body.items.0.start"
    past = {
        "device_id": r0,
        "start": (now - timedelta(hours=2)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }
    assert code({"items": [past]}) == "start_in_past"
    assert code({"items": [item(999_999, 0, 1)]}) == "unknown_device"
    assert code({"items": [item(lab.unschedulable, 0, 1)]}) == "device_not_schedulable"
    assert code({"items": [item(lab.retired, 0, 1)]}) == "device_not_schedulable"
    assert code({"items": [item(r0, 0, 11)]}) == "duration_too_long"
    assert code({"items": [item(r0, 24 * 31, 24 * 31 + 1)]}) == "notice_too_long"
    assert code({"items": [item(r0, 0, 1)], "collaborators": ["nobody-here"]}) == (
        "unknown_collaborator"
    )
    assert code({"items": [item(r0, 0, 1)], "status": "CONFIRMED"}) == "status_not_allowed"
    assert code({"items": [item(r0, 0, 1)], "user_id": viewer.id}) == "user_id_not_allowed"
    assert code({"items": [item(r0, 0, 2), item(r0, 1, 3)]}) == "overlapping_items"
    assert code({"items": [item(r0, 0, 1)], "topology_id": 12345}) == "unknown_topology"
    assert code({"items": []}) == "validation_error"
    assert code({"items": [item(r0, 0, 1)]}, account=viewer, status=403) == "permission_denied"

    set_setting(db, "booking.min_notice_minutes", 24 * 60 * 3)
    assert code({"items": [item(r0, 0, 1)]}) == "notice_too_short"
    set_setting(db, "booking.min_notice_minutes", 0)

    set_setting(db, "booking.max_active_per_user", 2)
    book(member, item(r0, 0, 1))
    assert code({"items": [item(r0, 2, 3), item(r1, 2, 3)]}, status=409) == "quota_exceeded"
    with db.scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Booking)) == 1


def test_approval_policy_decides_the_status(client, db, lab, make_user, book, admin):
    member = make_user("member")
    approver = make_user("approver")
    r0, r1, r2, r3 = lab.devices[:4]
    set_setting(db, "approval.mode", "over_limits")
    set_setting(db, "approval.auto_max_hours", 4)
    set_setting(db, "approval.auto_max_devices", 2)

    assert book(member, item(r0, 0, 4), item(r1, 0, 4))["status"] == "CONFIRMED"
    assert book(member, item(r0, 10, 15))["status"] == "PENDING"  # 5 hours
    assert book(member, item(r0, 20, 21), item(r1, 20, 21), item(r2, 20, 21))["status"] == (
        "PENDING"
    )
    # An approver's own request within their limits needs nobody else.
    assert book(approver, item(r3, 0, 8))["status"] == "CONFIRMED"
    set_approval_limits(db, approver, admin, max_hours=6)
    assert book(approver, item(r3, 10, 18))["status"] == "PENDING"

    set_setting(db, "approval.mode", "always")
    assert book(member, item(r2, 30, 31))["status"] == "PENDING"
    set_setting(db, "approval.mode", "auto")
    assert book(member, item(r0, 40, 48), item(r1, 40, 48), item(r2, 40, 48))["status"] == (
        "CONFIRMED"
    )
