"""Reading bookings: mine, the admins' list with filters and sorting, CSV, the dashboard, and
a constant number of queries whatever the page size."""

from __future__ import annotations

import csv
import io
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event, update

from labkeeper.booking.models import Booking
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import MaintenanceWindow
from tests.booking.conftest import API, at, iso, item, set_setting


@contextmanager
def counting(db):
    """Count the SQL statements run while the block runs."""
    seen = []

    def _count(*_args):
        seen.append(1)

    event.listen(db.engine, "before_cursor_execute", _count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", _count)


def test_mine_lists_owned_and_shared_groups(client, db, lab, make_user, book):
    alice, bob = make_user("member"), make_user("member")
    r0, r1 = lab.devices[:2]
    own = book(alice, item(r0, 5, 6))
    shared = book(bob, item(r1, 1, 2), collaborators=[alice.username])
    book(bob, item(r1, 3, 4))  # not alice's
    gone = book(alice, item(r0, 8, 9))
    client.post(f"{API}/bookings/groups/{gone['grouped_booking_id']}/cancel", headers=alice.headers)

    def mine(scope):
        r = client.get(f"{API}/bookings/mine", params={"scope": scope}, headers=alice.headers)
        assert r.status_code == 200, r.text
        return [g["grouped_booking_id"] for g in r.json()["items"]]

    assert mine("upcoming") == [shared["grouped_booking_id"], own["grouped_booking_id"]]
    assert mine("past") == [gone["grouped_booking_id"]]
    assert sorted(mine("all")) == sorted(
        [own["grouped_booking_id"], shared["grouped_booking_id"], gone["grouped_booking_id"]]
    )
    page = client.get(
        f"{API}/bookings/mine", params={"limit": 1, "offset": 1}, headers=alice.headers
    ).json()
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 1)
    assert page["items"][0]["grouped_booking_id"] == own["grouped_booking_id"]
    assert page["items"][0]["bookings"][0]["device_name"] == "r0"
    # A member has no bookings:read: the admins' list is closed to them.
    assert client.get(f"{API}/bookings", headers=alice.headers).status_code == 403


def test_admins_filter_sort_paginate_and_export(client, db, lab, make_user, book, admin):
    alice, bob = make_user("member"), make_user("member")
    r0, r1, r2 = lab.devices[:3]
    a1 = book(alice, item(r0, 0, 1), comment="with, comma")
    b1 = book(bob, item(r1, 2, 3))
    b2 = book(bob, item(r0, 4, 6), item(r2, 4, 6))
    w = book(alice, item(r0, 4, 5), waitlist=True)  # conflicting
    client.post(f"{API}/bookings/groups/{a1['grouped_booking_id']}/cancel", headers=alice.headers)
    with db.scope() as s:
        window = MaintenanceWindow(device_id=r1, start_time=at(2), end_time=at(3))
        s.add(window)
        s.flush()
        s.execute(
            update(Booking)
            .where(Booking.id == b1["bookings"][0]["booking_id"])
            .values(maintenance_conflict_id=window.id)
        )

    def ids(**params):
        r = client.get(f"{API}/bookings", params=params, headers=admin.headers)
        assert r.status_code == 200, r.text
        return [b["booking_id"] for b in r.json()["items"]]

    every = ids(sort="start", limit=500)
    assert len(every) == 5
    assert ids(status=["CANCELLED"]) == [a1["bookings"][0]["booking_id"]]
    assert sorted(ids(status=["CONFIRMED", "CONFLICTING"])) == sorted(
        [
            b1["bookings"][0]["booking_id"],
            *[b["booking_id"] for b in b2["bookings"]],
            w["bookings"][0]["booking_id"],
        ]
    )
    assert sorted(ids(device_id=r0)) == sorted(
        [
            a1["bookings"][0]["booking_id"],
            b2["bookings"][0]["booking_id"],
            w["bookings"][0]["booking_id"],
        ]
    )
    assert set(ids(user_id=bob.id)) == {
        b1["bookings"][0]["booking_id"],
        *[b["booking_id"] for b in b2["bookings"]],
    }
    assert sorted(ids(since=iso(3.5), until=iso(10))) == sorted(
        [*[b["booking_id"] for b in b2["bookings"]], w["bookings"][0]["booking_id"]]
    )
    assert sorted(ids(conflicts_only=True)) == sorted(
        [b1["bookings"][0]["booking_id"], w["bookings"][0]["booking_id"]]
    )
    by_user = client.get(
        f"{API}/bookings", params={"sort": "-user", "limit": 500}, headers=admin.headers
    ).json()["items"]
    assert [b["username"] for b in by_user] == sorted(
        (b["username"] for b in by_user), reverse=True
    )
    page = client.get(
        f"{API}/bookings", params={"sort": "start", "limit": 2, "offset": 2}, headers=admin.headers
    ).json()
    assert page["total"] == 5 and [b["booking_id"] for b in page["items"]] == every[2:4]
    naive = client.get(
        f"{API}/bookings", params={"since": "2026-01-01T00:00:00"}, headers=admin.headers
    )
    assert naive.status_code == 422

    r = client.get(
        f"{API}/bookings/export.csv",
        params={"user_id": alice.id, "sort": "start"},
        headers=admin.headers,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["booking_id"] for row in table] == [
        str(a1["bookings"][0]["booking_id"]),
        str(w["bookings"][0]["booking_id"]),
    ]
    assert table[0]["comment"] == "with, comma" and table[0]["status"] == "CANCELLED"
    assert table[0]["device_name"] == "r0" and table[0]["username"] == alice.username
    # Members may not export; approvers may.
    assert client.get(f"{API}/bookings/export.csv", headers=alice.headers).status_code == 403


def test_lists_cost_the_same_queries_whatever_the_page_size(client, db, lab, make_user, book):
    admin = make_user("admin")
    alice = make_user("member")
    friend = make_user("member")
    set_setting(db, "booking.max_active_per_user", 500)
    for i in range(12):
        book(alice, item(lab.devices[i % 6], 2 * i, 2 * i + 1), collaborators=[friend.username])
        client.post(
            f"{API}/favorites",
            json={"name": f"fav{i}", "device_ids": [lab.devices[i % 6]]},
            headers=alice.headers,
        )
    with db.scope() as s:
        for d in lab.devices:
            s.add(MaintenanceWindow(device_id=d, start_time=at(30), end_time=at(31)))
    window = {"start": iso(-1), "end": iso(40)}
    urls = [
        (f"{API}/bookings", {}, admin),
        (f"{API}/bookings/mine", {"scope": "all"}, alice),
        (f"{API}/bookings/mine", {"scope": "all"}, friend),
        (f"{API}/timeline", window, alice),
        (f"{API}/availability", {"start": iso(100), "end": iso(101)}, alice),
        (f"{API}/maintenance", {}, alice),
        (f"{API}/favorites", {}, alice),
    ]
    for url, params, who in urls:
        # Once first: a token's first use records "last used", which is not the list's cost.
        client.get(url, params={**params, "limit": 1}, headers=who.headers)
        counts = []
        for limit in (2, 12):
            with counting(db) as seen:
                r = client.get(url, params={**params, "limit": limit}, headers=who.headers)
            assert r.status_code == 200, r.text
            assert len(r.json()["items"]) == min(limit, r.json()["total"]) > 0, url
            counts.append(len(seen))
        assert counts[0] == counts[1], (url, counts)


def test_dashboard_sums_up_the_lab(client, db, lab, make_user, book, admin):
    set_setting(db, "approval.mode", "always")
    alice = make_user("member")
    r0, r1, r2 = lab.devices[:3]
    book(alice, item(r0, 0, 1))
    book(alice, item(r0, 0, 1), waitlist=True)
    # Two days of use on r2 in the last week: one active now, one finished.
    now = utcnow()
    with db.scope() as s:
        s.add_all(
            [
                Booking(
                    grouped_booking_id="used-1",
                    device_id=r2,
                    user_id=alice.id,
                    start_time=now - timedelta(days=3),
                    end_time=now - timedelta(days=2),
                    status="COMPLETED",
                ),
                Booking(
                    grouped_booking_id="used-2",
                    device_id=r2,
                    user_id=alice.id,
                    start_time=now - timedelta(hours=1),
                    end_time=now + timedelta(hours=1),
                    status="ACTIVE",
                ),
                MaintenanceWindow(device_id=r1, start_time=now, end_time=now + timedelta(hours=1)),
            ]
        )
    r = client.get(f"{API}/dashboard", headers=admin.headers)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["pending_approvals"]["groups"] == 1
    assert data["pending_approvals"]["requested_last_7d"] == 1
    assert data["active_conflicts"] == {"waitlisted": 1, "maintenance_clashes": 0, "total": 1}
    assert data["devices"]["total"] == 8
    assert data["devices"]["by_status"] == {"available": 7, "retired": 1}
    assert data["active_now"] == {"rows": 1, "groups": 1}
    top = data["utilisation"][0]
    assert top["device_id"] == r2 and abs(top["hours"] - 25) < 0.1
    assert abs(top["percent"] - 100 * 25 / 168) < 0.2
    assert {u["device_id"] for u in data["utilisation"]} == set(lab.devices) | {lab.unschedulable}
    assert data["recent_activity"][0]["action"] == "bookings.create"
    assert client.get(f"{API}/dashboard", headers=alice.headers).status_code == 403
