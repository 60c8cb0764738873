"""What is free when: availability, the timeline grid, and favorites booked in one call."""

from __future__ import annotations

from datetime import timedelta

from labkeeper.booking.models import Booking
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import MaintenanceWindow
from tests.booking.conftest import API, at, iso, item


def test_availability_and_timeline(client, db, lab, make_user, book):
    alice, viewer = make_user("member"), make_user("viewer")
    r0, r1, r2 = lab.devices[:3]
    held = book(alice, item(r0, 1, 3))
    book(alice, item(r0, 1, 2), waitlist=True)
    with db.scope() as s:
        s.add(MaintenanceWindow(device_id=r1, start_time=at(2), end_time=at(4), reason="swap"))
        # History the grid shows too: a finished booking yesterday.
        s.add(
            Booking(
                grouped_booking_id="past",
                device_id=r2,
                user_id=alice.id,
                status="COMPLETED",
                start_time=utcnow() - timedelta(hours=5),
                end_time=utcnow() - timedelta(hours=4),
            )
        )

    def free(start, end):
        r = client.get(
            f"{API}/availability",
            params={"start": iso(start), "end": iso(end)},
            headers=viewer.headers,
        )
        assert r.status_code == 200, r.text
        return {d["device_id"] for d in r.json()["items"]}

    assert free(0, 1) == set(lab.devices)  # the panel and the retired device are never listed
    assert free(0, 5) == set(lab.devices) - {r0, r1}
    assert free(3, 4) == set(lab.devices) - {r1}
    assert free(4, 5) == set(lab.devices)

    one = client.get(
        f"{API}/availability/{r0}", params={"start": iso(0), "end": iso(2)}, headers=viewer.headers
    ).json()
    assert one["free"] is False and one["bookable"] is True
    assert [(b["kind"], b["id"]) for b in one["busy"]] == [
        ("booking", held["bookings"][0]["booking_id"])
    ]  # the waitlisted row occupies nothing
    panel = client.get(
        f"{API}/availability/{lab.unschedulable}",
        params={"start": iso(0), "end": iso(2)},
        headers=viewer.headers,
    ).json()
    assert panel == {
        "device_id": lab.unschedulable,
        "name": "panel",
        "bookable": False,
        "free": False,
        "busy": [],
    }
    serviced = client.get(
        f"{API}/availability/{r1}", params={"start": iso(3), "end": iso(5)}, headers=viewer.headers
    ).json()
    assert serviced["free"] is False and serviced["busy"][0]["kind"] == "maintenance"
    bad = client.get(
        f"{API}/availability/{r1}", params={"start": iso(5), "end": iso(3)}, headers=viewer.headers
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_time_range"
    too_long = client.get(
        f"{API}/availability",
        params={"start": iso(0), "end": iso(24 * 70)},
        headers=viewer.headers,
    )
    assert too_long.json()["error"]["code"] == "window_too_long"

    grid = client.get(
        f"{API}/timeline",
        params={"start": (utcnow() - timedelta(hours=6)).isoformat(), "end": iso(6)},
        headers=viewer.headers,
    )
    assert grid.status_code == 200, grid.text
    lanes = {lane["device_id"]: lane for lane in grid.json()["items"]}
    assert grid.json()["total"] == 7 and lab.retired not in lanes
    assert sorted(b["status"] for b in lanes[r0]["bookings"]) == ["CONFIRMED", "CONFLICTING"]
    assert {b["username"] for b in lanes[r0]["bookings"]} == {alice.username}
    starts = [b["start"] for b in lanes[r0]["bookings"]]
    assert starts == sorted(starts)
    assert [m["reason"] for m in lanes[r1]["maintenance"]] == ["swap"]
    assert [b["status"] for b in lanes[r2]["bookings"]] == ["COMPLETED"]
    assert lanes[lab.unschedulable]["bookable"] is False
    some = client.get(
        f"{API}/timeline",
        params={"start": iso(0), "end": iso(6), "device_id": [r1, r0]},
        headers=viewer.headers,
    ).json()
    assert [lane["name"] for lane in some["items"]] == ["r0", "r1"]


def test_favorites_save_devices_and_book_them_in_one_call(client, db, lab, make_user, book):
    alice, bob = make_user("member"), make_user("member")
    r0, r1, r2 = lab.devices[:3]
    made = book(alice, item(r1, 0, 1), item(r0, 0, 1))

    r = client.post(
        f"{API}/favorites",
        json={"name": "ring", "grouped_booking_id": made["grouped_booking_id"]},
        headers=alice.headers,
    )
    assert r.status_code == 201, r.text
    ring = r.json()
    assert ring["devices"] == [{"device_id": r0, "name": "r0"}, {"device_id": r1, "name": "r1"}]
    dup = client.post(
        f"{API}/favorites", json={"name": "ring", "device_ids": [r2]}, headers=alice.headers
    )
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "already_exists"
    both = client.post(
        f"{API}/favorites",
        json={"name": "x", "device_ids": [r2], "grouped_booking_id": made["grouped_booking_id"]},
        headers=alice.headers,
    )
    assert both.status_code == 422
    unknown = client.post(
        f"{API}/favorites", json={"name": "x", "device_ids": [999_999]}, headers=alice.headers
    )
    assert unknown.json()["error"]["code"] == "unknown_device"
    # Someone else's group cannot be copied by a member who does not share it.
    other = client.post(
        f"{API}/favorites",
        json={"name": "theirs", "grouped_booking_id": made["grouped_booking_id"]},
        headers=bob.headers,
    )
    assert other.status_code == 403

    booked = client.post(
        f"{API}/favorites/{ring['id']}/book",
        json={"start": iso(24), "end": iso(26), "comment": "again"},
        headers=alice.headers,
    )
    assert booked.status_code == 201, booked.text
    assert sorted(b["device_id"] for b in booked.json()["bookings"]) == [r0, r1]
    clash = client.post(
        f"{API}/favorites/{ring['id']}/book",
        json={"start": iso(25), "end": iso(27)},
        headers=alice.headers,
    )
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "booking_conflict"
    # Favorites are private: Bob can neither see, book nor delete Alice's.
    assert client.get(f"{API}/favorites", headers=bob.headers).json()["total"] == 0
    assert (
        client.post(
            f"{API}/favorites/{ring['id']}/book",
            json={"start": iso(40), "end": iso(41)},
            headers=bob.headers,
        ).status_code
        == 404
    )
    assert client.delete(f"{API}/favorites/{ring['id']}", headers=bob.headers).status_code == 404
    assert client.delete(f"{API}/favorites/{ring['id']}", headers=alice.headers).status_code == 204
    assert client.get(f"{API}/favorites", headers=alice.headers).json()["items"] == []
