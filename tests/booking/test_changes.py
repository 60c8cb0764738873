"""Changing bookings: approvals, cancel, decline, extend, rebook, edit, the waitlist moving up."""

from __future__ import annotations

from sqlalchemy import select

from labkeeper.booking.models import Booking, BookingCollaborator
from tests.booking.conftest import (
    API,
    at,
    audit_actions,
    iso,
    item,
    set_approval_limits,
    set_setting,
    statuses,
)


def _ids(made):
    return [b["booking_id"] for b in made["bookings"]]


def test_approvers_approve_and_decline_within_their_limits(client, db, lab, make_user, book, admin):
    set_setting(db, "approval.mode", "always")
    member, approver = make_user("member"), make_user("approver")
    set_approval_limits(db, approver, admin, max_hours=4, max_devices=2)
    r0, r1, r2 = lab.devices[:3]
    small = book(member, item(r0, 0, 2))
    long = book(member, item(r1, 0, 6))
    wide = book(member, item(r0, 10, 11), item(r1, 10, 11), item(r2, 10, 11))
    assert {small["status"], long["status"], wide["status"]} == {"PENDING"}

    queue = client.get(f"{API}/bookings/pending", headers=approver.headers)
    assert queue.status_code == 200, queue.text
    listed = {g["grouped_booking_id"]: g for g in queue.json()["items"]}
    assert [g["grouped_booking_id"] for g in queue.json()["items"]] == [
        small["grouped_booking_id"],
        long["grouped_booking_id"],
        wide["grouped_booking_id"],
    ]
    assert listed[small["grouped_booking_id"]]["within_my_limits"] is True
    assert listed[long["grouped_booking_id"]]["within_my_limits"] is False
    assert listed[wide["grouped_booking_id"]]["devices"] == 3

    # Beyond the limits: refused, and nothing changes (not even the request within them).
    r = client.post(
        f"{API}/bookings/approve",
        json={"grouped_booking_ids": [small["grouped_booking_id"], long["grouped_booking_id"]]},
        headers=approver.headers,
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "approval_limit_exceeded"
    assert (
        r.json()["error"]["details"]["over"][0]["grouped_booking_id"] == long["grouped_booking_id"]
    )
    assert statuses(db, *_ids(small), *_ids(long)) == ["PENDING", "PENDING"]

    r = client.post(
        f"{API}/bookings/approve", json={"booking_ids": _ids(small)}, headers=approver.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "CONFIRMED" and r.json()["booking_ids"] == _ids(small)
    with db.scope(write=False) as s:
        row = s.get(Booking, _ids(small)[0])
        assert row.status == "CONFIRMED" and row.decided_by == approver.id and row.decided_at

    again = client.post(
        f"{API}/bookings/approve", json={"booking_ids": _ids(small)}, headers=approver.headers
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"

    no_reason = client.post(
        f"{API}/bookings/decline",
        json={"booking_ids": _ids(long)},
        headers=admin.headers,
    )
    assert no_reason.status_code == 422
    declined = client.post(
        f"{API}/bookings/decline",
        json={
            "grouped_booking_ids": [long["grouped_booking_id"], wide["grouped_booking_id"]],
            "reason": "the lab is closed that day",
        },
        headers=admin.headers,
    )
    assert declined.status_code == 200, declined.text
    assert statuses(db, *_ids(long), *_ids(wide)) == ["REJECTED"] * 4
    with db.scope(write=False) as s:
        assert s.get(Booking, _ids(long)[0]).decision_reason == "the lab is closed that day"

    member_try = client.post(
        f"{API}/bookings/approve", json={"booking_ids": _ids(small)}, headers=member.headers
    )
    assert member_try.status_code == 403
    assert member_try.json()["error"]["code"] == "permission_denied"
    assert [a.action for a in audit_actions(db, "bookings.") if a.outcome == "success"][-2:] == [
        "bookings.approve",
        "bookings.decline",
    ]


def test_cancel_frees_the_slot_and_the_waitlist_moves_up_in_order(client, db, lab, make_user, book):
    alice, bob, carol, dave = (make_user("member") for _ in range(4))
    stranger = make_user("member")
    r0 = lab.devices[0]
    holder = book(alice, item(r0, 0, 2))
    b = book(bob, item(r0, 0, 1), waitlist=True)
    c = book(carol, item(r0, 1, 2), waitlist=True)
    d = book(dave, item(r0, 0, 2), waitlist=True)
    assert statuses(db, *_ids(b), *_ids(c), *_ids(d)) == ["CONFLICTING"] * 3

    gid = holder["grouped_booking_id"]
    r = client.post(f"{API}/bookings/groups/{gid}/cancel", headers=stranger.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_your_booking"

    r = client.post(
        f"{API}/bookings/groups/{gid}/cancel",
        json={"reason": "plans changed"},
        headers=alice.headers,
    )
    assert r.status_code == 200, r.text
    # Bob and Carol asked first and fit together; Dave overlaps both and keeps waiting.
    assert sorted(r.json()["promoted"]) == _ids(b) + _ids(c)
    assert statuses(db, *_ids(holder), *_ids(b), *_ids(c), *_ids(d)) == [
        "CANCELLED",
        "CONFIRMED",
        "CONFIRMED",
        "CONFLICTING",
    ]
    (entry,) = [a for a in audit_actions(db, "bookings.cancel") if a.outcome == "success"]
    assert entry.payload["reason"] == "plans changed"
    assert sorted(entry.payload["promoted"]) == _ids(b) + _ids(c)

    again = client.post(f"{API}/bookings/groups/{gid}/cancel", headers=alice.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"

    # Cancelling one row by id: Bob leaves, Dave still overlaps Carol.
    r = client.post(f"{API}/bookings/{_ids(b)[0]}/cancel", headers=bob.headers)
    assert r.status_code == 200 and r.json()["promoted"] == []
    r = client.post(f"{API}/bookings/{_ids(c)[0]}/cancel", headers=carol.headers)
    assert r.json()["promoted"] == _ids(d)
    assert statuses(db, *_ids(d)) == ["CONFIRMED"]


def test_declining_a_pending_request_promotes_the_waitlist(client, db, lab, make_user, book):
    set_setting(db, "approval.mode", "always")
    alice, bob = make_user("member"), make_user("member")
    approver = make_user("approver")
    r0 = lab.devices[0]
    pending = book(alice, item(r0, 0, 3))
    waiting = book(bob, item(r0, 1, 2), waitlist=True)
    r = client.post(
        f"{API}/bookings/decline",
        json={"booking_ids": _ids(pending), "reason": "no"},
        headers=approver.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["promoted"] == _ids(waiting)
    # Promoted under the same policy as a new request: it waits for an approver.
    assert statuses(db, *_ids(waiting)) == ["PENDING"]


def test_extend_is_rechecked_and_shortening_frees_the_slot(client, db, lab, make_user, book):
    set_setting(db, "approval.auto_max_hours", 4)
    set_setting(db, "booking.max_duration_hours", 12)
    alice, bob, carol = (make_user("member") for _ in range(3))
    r0, r1 = lab.devices[:2]
    mine = book(alice, item(r0, 0, 2), item(r1, 0, 2))
    gid = mine["grouped_booking_id"]
    book(bob, item(r0, 4, 5))
    later = book(carol, item(r0, 2, 3))

    def extend(end_hours, account=alice):
        return client.post(
            f"{API}/bookings/groups/{gid}/extend",
            json={"end": iso(end_hours)},
            headers=account.headers,
        )

    blocked = extend(2.5)
    assert blocked.status_code == 409
    assert blocked.json()["error"]["code"] == "booking_conflict"
    assert {c["booking_id"] for c in blocked.json()["error"]["details"]["conflicts"]} == set(
        _ids(later)
    )
    assert extend(13).json()["error"]["code"] == "duration_too_long"
    assert extend(-30).json()["error"]["code"] == "invalid_time_range"
    assert extend(3, account=bob).json()["error"]["code"] == "not_your_booking"

    # Carol gives her hour up; Alice can now grow into it (3 h, still within auto limits).
    client.post(
        f"{API}/bookings/groups/{later['grouped_booking_id']}/cancel", headers=carol.headers
    )
    grown = extend(3)
    assert grown.status_code == 200, grown.text
    assert grown.json()["end"].startswith(at(3).strftime("%Y-%m-%dT%H:%M"))
    assert {b["status"] for b in grown.json()["bookings"]} == {"CONFIRMED"}
    # Growing past what is confirmed without approval sends it back to pending.
    assert extend(3.5).json()["status"] == "CONFIRMED"
    waiting = book(carol, item(r0, 2, 3), waitlist=True)
    back = client.post(
        f"{API}/bookings/{_ids(mine)[1]}/extend", json={"end": iso(4.5)}, headers=alice.headers
    )
    assert back.status_code == 200, back.text
    assert statuses(db, *_ids(mine)) == ["CONFIRMED", "PENDING"]

    # Shortening r0 releases [1, 3.5): Carol's waitlisted hour is promoted.
    short = client.post(
        f"{API}/bookings/{_ids(mine)[0]}/extend", json={"end": iso(1)}, headers=alice.headers
    )
    assert short.status_code == 200, short.text
    assert statuses(db, *_ids(waiting)) == ["CONFIRMED"]
    (entry,) = [a for a in audit_actions(db, "bookings.extend") if a.payload.get("promoted")]
    assert entry.payload["promoted"] == _ids(waiting)


def test_rebook_and_edit_collaborators_and_comment(client, db, lab, make_user, book, admin):
    owner, friend, other, stranger = (make_user("member") for _ in range(4))
    r0, r1 = lab.devices[:2]
    made = book(
        owner, item(r0, 0, 1), item(r1, 0, 1), comment="first", collaborators=[friend.username]
    )
    gid = made["grouped_booking_id"]

    # A collaborator may edit; the collaborator list is replaced.
    r = client.patch(
        f"{API}/bookings/groups/{gid}",
        json={"comment": "second", "collaborators": [friend.username, other.username]},
        headers=friend.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["comment"] == "second"
    assert sorted(r.json()["collaborators"]) == sorted([friend.username, other.username])
    r = client.patch(
        f"{API}/bookings/groups/{gid}",
        json={"collaborators": ["ghost-user"]},
        headers=owner.headers,
    )
    assert r.json()["error"]["code"] == "unknown_collaborator"
    r = client.patch(
        f"{API}/bookings/groups/{gid}", json={"comment": "x"}, headers=stranger.headers
    )
    assert r.status_code == 403

    # The owner rebooks the same devices another day: a new group, same people and comment.
    r = client.post(
        f"{API}/bookings/groups/{gid}/rebook",
        json={"start": iso(24), "end": iso(26)},
        headers=owner.headers,
    )
    assert r.status_code == 201, r.text
    again = r.json()
    assert again["grouped_booking_id"] != gid
    assert sorted(b["device_id"] for b in again["bookings"]) == [r0, r1]
    group = client.get(
        f"{API}/bookings/groups/{again['grouped_booking_id']}", headers=owner.headers
    ).json()
    assert group["comment"] == "second"
    assert sorted(group["collaborators"]) == sorted([friend.username, other.username])

    # A collaborator rebooks: they own the new group and the old owner joins as collaborator.
    r = client.post(
        f"{API}/bookings/groups/{gid}/rebook",
        json={"start": iso(48), "end": iso(49), "comment": "mine now"},
        headers=friend.headers,
    )
    assert r.status_code == 201, r.text
    with db.scope(write=False) as s:
        new_gid = r.json()["grouped_booking_id"]
        assert {
            b.user_id
            for b in s.scalars(select(Booking).where(Booking.grouped_booking_id == new_gid))
        } == {friend.id}
        people = set(
            s.scalars(
                select(BookingCollaborator.user_id).where(
                    BookingCollaborator.grouped_booking_id == new_gid
                )
            )
        )
        assert people == {owner.id, other.id}
    (entry,) = [
        a
        for a in audit_actions(db, "bookings.create")
        if a.payload.get("rebook_of") and a.actor_id == friend.id
    ]
    assert entry.payload["rebook_of"] == gid

    # Rebooking onto a taken slot is the same 409 as any request.
    r = client.post(
        f"{API}/bookings/groups/{gid}/rebook",
        json={"start": iso(24), "end": iso(25)},
        headers=owner.headers,
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "booking_conflict"

    # Admins may cancel anyone's booking.
    r = client.post(f"{API}/bookings/groups/{gid}/cancel", headers=admin.headers)
    assert r.status_code == 200, r.text
