"""Maintenance windows: presets in the lab's time zone, marking clashing bookings, blocking
new ones, and cancelling (which moves the waitlist up)."""

from __future__ import annotations

from datetime import UTC, datetime

from labkeeper.booking.models import Booking
from tests.booking.conftest import API, audit_actions, iso, item, set_setting, statuses


def _ids(made):
    return [b["booking_id"] for b in made["bookings"]]


def test_presets_are_days_in_the_lab_time_zone(client, db, admin):
    set_setting(db, "general.lab_timezone", "Europe/Dublin")

    def presets(day):
        r = client.get(f"{API}/maintenance/presets", params={"date": day}, headers=admin.headers)
        assert r.status_code == 200, r.text
        return {p["preset"]: (p["start"], p["end"]) for p in r.json()["presets"]}

    summer = presets("2026-07-01")  # IST, UTC+1
    assert summer["all_day"] == ("2026-06-30T23:00:00Z", "2026-07-01T23:00:00Z")
    assert summer["morning"] == ("2026-07-01T05:00:00Z", "2026-07-01T11:00:00Z")
    assert summer["afternoon"] == ("2026-07-01T11:00:00Z", "2026-07-01T17:00:00Z")
    assert summer["evening"] == ("2026-07-01T17:00:00Z", "2026-07-01T23:00:00Z")
    # The day the clocks go back lasts 25 hours.
    autumn = presets("2026-10-25")
    assert autumn["all_day"] == ("2026-10-24T23:00:00Z", "2026-10-26T00:00:00Z")


def test_a_window_marks_clashing_bookings_and_blocks_new_ones(
    client, db, lab, make_user, book, admin
):
    alice, bob = make_user("member"), make_user("member")
    r0, r1, r2 = lab.devices[:3]
    hit = book(alice, item(r0, 1, 3), item(r2, 1, 3))
    spared = book(bob, item(r1, 10, 11))
    waiting = book(bob, item(r0, 4, 5))

    denied = client.post(
        f"{API}/maintenance",
        json={"device_ids": [r0], "start": iso(2), "end": iso(6)},
        headers=alice.headers,
    )
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    r = client.post(
        f"{API}/maintenance",
        json={"device_ids": [r0, r1], "start": iso(2), "end": iso(6), "reason": "firmware"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert sorted(w["device_id"] for w in made["windows"]) == [r0, r1]
    assert made["affected_booking_ids"] == sorted([_ids(hit)[0], *_ids(waiting)])
    by_device = {w["device_id"]: w["id"] for w in made["windows"]}
    with db.scope(write=False) as s:
        marks = {b.id: b.maintenance_conflict_id for b in s.query(Booking)}
    assert marks[_ids(hit)[0]] == by_device[r0]
    assert marks[_ids(hit)[1]] is None and marks[_ids(spared)[0]] is None
    (entry,) = [a for a in audit_actions(db, "maintenance.create") if a.outcome == "success"]
    assert entry.payload["affected_booking_ids"] == made["affected_booking_ids"]
    # The marked bookings show as conflicts for admins.
    listed = client.get(
        f"{API}/bookings", params={"conflicts_only": True}, headers=admin.headers
    ).json()
    assert {b["booking_id"] for b in listed["items"]} == set(made["affected_booking_ids"])

    blocked = book(bob, item(r1, 5, 7), expect=409)["error"]
    assert blocked["code"] == "booking_conflict"
    assert blocked["details"]["conflicts"][0]["kind"] == "maintenance"
    assert blocked["details"]["conflicts"][0]["maintenance_id"] == by_device[r1]
    queued = book(bob, item(r1, 5, 7), waitlist=True)
    assert queued["status"] == "CONFLICTING"

    listed = client.get(
        f"{API}/maintenance", params={"device_id": r1}, headers=alice.headers
    ).json()
    assert [w["reason"] for w in listed["items"]] == ["firmware"]

    # Cancelling the window on r1 clears it: Bob's waitlisted request is promoted.
    r = client.delete(f"{API}/maintenance/{by_device[r1]}", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["cancelled_at"] is not None
    assert statuses(db, *_ids(queued)) == ["CONFIRMED"]
    again = client.delete(f"{API}/maintenance/{by_device[r1]}", headers=admin.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"
    r = client.delete(f"{API}/maintenance/{by_device[r0]}", headers=admin.headers)
    with db.scope(write=False) as s:
        assert s.get(Booking, _ids(hit)[0]).maintenance_conflict_id is None
    assert client.get(f"{API}/maintenance", headers=alice.headers).json()["total"] == 0
    assert (
        client.get(
            f"{API}/maintenance", params={"include_cancelled": True}, headers=alice.headers
        ).json()["total"]
        == 2
    )


def test_a_preset_window_and_bad_windows(client, db, lab, admin):
    r0 = lab.devices[0]
    set_setting(db, "general.lab_timezone", "UTC")
    day = datetime.now(UTC).date().replace(year=datetime.now(UTC).year + 1)
    r = client.post(
        f"{API}/maintenance",
        json={"device_ids": [r0], "preset": "afternoon", "date": day.isoformat()},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    (window,) = r.json()["windows"]
    assert window["start"] == f"{day.isoformat()}T12:00:00Z"
    assert window["end"] == f"{day.isoformat()}T18:00:00Z"

    def code(body):
        r = client.post(f"{API}/maintenance", json=body, headers=admin.headers)
        assert r.status_code == 422, r.text
        return r.json()["error"]["code"]

    assert code({"device_ids": [r0], "start": iso(3), "end": iso(2)}) == "invalid_time_range"
    assert code({"device_ids": [r0], "start": iso(-100), "end": iso(-99)}) == "end_in_past"
    assert code({"device_ids": [999_999], "start": iso(2), "end": iso(3)}) == "unknown_device"
    assert code({"device_ids": [r0], "preset": "morning"}) == "validation_error"
    assert (
        code(
            {
                "device_ids": [r0],
                "start": iso(2),
                "end": iso(3),
                "preset": "morning",
                "date": day.isoformat(),
            }
        )
        == "validation_error"
    )
