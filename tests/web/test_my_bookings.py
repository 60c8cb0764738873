"""My bookings and one booking group through the test client: tabs, actions that go through the
booking service (cancel, extend, rebook, favorites), refusals shown as messages, not 500s."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from labkeeper.booking.models import Booking, BookingFavorite
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device, DeviceType
from tests.web.conftest import HTML, counting, sign_in

API = "/api/v1"
DAY = (utcnow() + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
PASSWORD = "booking-pass-1"


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def local(moment: datetime) -> str:
    """A datetime-local value (the lab's zone is UTC in the tests)."""
    return moment.strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def devices(db) -> list[int]:
    with db.scope() as s:
        kind = DeviceType(name="router", category="infra", is_schedulable=True)
        s.add(kind)
        s.flush()
        rows = [Device(name=f"r{i}", device_type_id=kind.id) for i in range(4)]
        s.add_all(rows)
        s.flush()
        return [d.id for d in rows]


def book(client, account, *items: tuple[int, float, float], expect: int = 201, **body) -> Any:
    r = client.post(
        f"{API}/bookings",
        json={
            "items": [
                {"device_id": d, "start": at(a).isoformat(), "end": at(b).isoformat()}
                for d, a, b in items
            ],
            **body,
        },
        headers=account.headers,
    )
    assert r.status_code == expect, r.text
    return r.json()


def statuses(db) -> dict[int, str]:
    with db.scope(write=False) as s:
        return dict(s.execute(select(Booking.id, Booking.status)).all())


@pytest.fixture
def mia(client, make_user) -> tuple[Any, str]:
    account = make_user("member", username="mia", password=PASSWORD)
    return account, sign_in(client, "mia", PASSWORD)


def test_tabs_split_upcoming_active_and_past(client, db, devices, mia, make_user):
    account, _ = mia
    ahead = book(client, account, (devices[0], 0, 3), (devices[1], 0, 3), comment="ber run")
    with db.scope() as s:  # one under way now and one finished, written as the lifecycle would
        now = utcnow()
        s.add_all(
            [
                Booking(
                    grouped_booking_id="g-active",
                    device_id=devices[2],
                    user_id=account.id,
                    start_time=now - timedelta(hours=1),
                    end_time=now + timedelta(hours=1),
                    status="ACTIVE",
                ),
                Booking(
                    grouped_booking_id="g-past",
                    device_id=devices[3],
                    user_id=account.id,
                    start_time=now - timedelta(days=3),
                    end_time=now - timedelta(days=2),
                    status="COMPLETED",
                ),
            ]
        )
    upcoming = client.get("/bookings", headers=HTML).text
    assert f"/bookings/{ahead['grouped_booking_id']}" in upcoming
    assert "r0, r1" in upcoming and "ber run" in upcoming
    assert "g-active" not in upcoming and "g-past" not in upcoming
    active = client.get("/bookings?tab=active", headers=HTML).text
    assert "/bookings/g-active" in active and ahead["grouped_booking_id"] not in active
    past = client.get("/bookings?tab=past", headers=HTML).text
    assert "/bookings/g-past" in past and "g-active" not in past
    # someone else's bookings are not mine
    other = make_user("member", username="otto")
    book(client, other, (devices[3], 5, 6))
    assert client.get("/bookings", headers=HTML).text.count('class="group-title"') == 1


def test_empty_tabs_say_what_to_do(client, mia):
    page = client.get("/bookings", headers=HTML)
    assert page.status_code == 200
    assert "Nothing booked ahead" in page.text and 'href="/timeline"' in page.text
    assert "No favorites yet" in page.text
    assert "No past bookings" in client.get("/bookings?tab=past", headers=HTML).text


def test_the_list_costs_the_same_queries_for_many_groups(client, db, devices, mia):
    account, _ = mia
    book(client, account, (devices[0], 0, 1))
    with counting(db) as few:
        assert client.get("/bookings", headers=HTML).status_code == 200
    for i in range(1, 12):
        book(
            client,
            account,
            (devices[i % 4], 2 * i, 2 * i + 1),
            (devices[(i + 1) % 4], 2 * i, 2 * i + 1),
        )
    with counting(db) as many:
        page = client.get("/bookings", headers=HTML)
    assert page.text.count('class="group-title"') == 12
    assert len(many) == len(few)


def test_cancel_from_the_list_goes_through_the_service(client, db, devices, mia):
    account, csrf = mia
    made = book(client, account, (devices[0], 0, 3), (devices[1], 0, 3))
    gid = made["grouped_booking_id"]
    r = client.post(
        f"/bookings/{gid}/cancel",
        data={"csrf_token": csrf, "back": "/bookings?tab=upcoming"},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/bookings?tab=upcoming"
    assert set(statuses(db).values()) == {"CANCELLED"}
    # cancelling again is a refused transition shown on the group's page, not a 500
    again = client.post(f"/bookings/{gid}/cancel", data={"csrf_token": csrf}, headers=HTML)
    assert again.status_code == 409
    assert "Nothing to cancel" in again.text
    detail = client.get(f"/bookings/{gid}", headers=HTML).text
    assert "Cancel" in detail and "cancelled" in detail  # the history shows it


def test_extend_and_its_conflict_message(client, db, devices, mia, make_user):
    account, csrf = mia
    mine = book(client, account, (devices[0], 0, 3))["grouped_booking_id"]
    other = make_user("member", username="otto")
    book(client, other, (devices[0], 4, 6))
    r = client.post(
        f"/bookings/{mine}/extend",
        data={"csrf_token": csrf, "end": local(at(3.5))},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    with db.scope(write=False) as s:
        row = s.scalars(select(Booking).where(Booking.grouped_booking_id == mine)).one()
        assert row.end_time == at(3.5)
    clash = client.post(
        f"/bookings/{mine}/extend", data={"csrf_token": csrf, "end": local(at(5))}, headers=HTML
    )
    assert clash.status_code == 409
    assert "collides with 1 booking" in clash.text
    assert "r0 is booked by otto" in clash.text
    bad = client.post(
        f"/bookings/{mine}/extend", data={"csrf_token": csrf, "end": "next tuesday"}, headers=HTML
    )
    assert bad.status_code == 422 and "Use a date and time" in bad.text


def test_rebook_makes_a_new_group_with_the_same_devices(client, db, devices, mia):
    account, csrf = mia
    gid = book(client, account, (devices[0], 0, 2), (devices[2], 0, 2))["grouped_booking_id"]
    r = client.post(
        f"/bookings/{gid}/rebook",
        data={"csrf_token": csrf, "start": local(at(24)), "end": local(at(26))},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    new = r.headers["location"].rsplit("/", 1)[1]
    assert new != gid
    with db.scope(write=False) as s:
        rows = s.scalars(select(Booking).where(Booking.grouped_booking_id == new)).all()
    assert sorted(b.device_id for b in rows) == [devices[0], devices[2]]
    assert {b.start_time for b in rows} == {at(24)}
    page = client.get(r.headers["location"], headers=HTML).text
    assert "r0" in page and "r2" in page
    # the same window again collides with the new group itself
    clash = client.post(
        f"/bookings/{gid}/rebook",
        data={"csrf_token": csrf, "start": local(at(25)), "end": local(at(27))},
        headers=HTML,
    )
    assert clash.status_code == 409 and "is booked by mia" in clash.text
    backwards = client.post(
        f"/bookings/{gid}/rebook",
        data={"csrf_token": csrf, "start": local(at(27)), "end": local(at(25))},
        headers=HTML,
    )
    assert backwards.status_code == 422


def test_favorites_save_book_and_remove(client, db, devices, mia):
    account, csrf = mia
    gid = book(client, account, (devices[1], 0, 2), (devices[3], 0, 2))["grouped_booking_id"]
    r = client.post(
        f"/bookings/{gid}/favorite",
        data={"csrf_token": csrf, "name": "ring"},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    listing = client.get("/bookings", headers=HTML).text
    assert "ring" in listing and "r1, r3" in listing
    with db.scope(write=False) as s:
        fid = s.scalars(select(BookingFavorite.id)).one()
    taken = client.post(
        f"/bookings/{gid}/favorite", data={"csrf_token": csrf, "name": "ring"}, headers=HTML
    )
    assert taken.status_code == 409 and "already have a favorite" in taken.text
    empty = client.post(
        f"/bookings/{gid}/favorite", data={"csrf_token": csrf, "name": ""}, headers=HTML
    )
    assert empty.status_code == 422
    booked = client.post(
        f"/bookings/favorites/{fid}/book",
        data={"csrf_token": csrf, "start": local(at(48)), "end": local(at(50))},
        headers=HTML,
        follow_redirects=False,
    )
    assert booked.status_code == 303 and booked.headers["location"].startswith("/bookings/")
    assert len(statuses(db)) == 4
    clash = client.post(
        f"/bookings/favorites/{fid}/book",
        data={"csrf_token": csrf, "start": local(at(49)), "end": local(at(51))},
        headers=HTML,
    )
    assert clash.status_code == 409 and "r1 is booked by mia" in clash.text
    missing = client.post(
        f"/bookings/favorites/{fid}/book", data={"csrf_token": csrf, "start": ""}, headers=HTML
    )
    assert missing.status_code == 422 and "Choose a date and time" in missing.text
    gone = client.post(
        f"/bookings/favorites/{fid}/delete",
        data={"csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert gone.status_code == 303
    assert "No favorites yet" in client.get("/bookings", headers=HTML).text


def test_group_page_shows_people_and_edits_them(client, db, devices, mia, make_user):
    account, csrf = mia
    make_user("member", username="carl")
    gid = book(client, account, (devices[0], 0, 2), comment="first", collaborators=["carl"])[
        "grouped_booking_id"
    ]
    page = client.get(f"/bookings/{gid}", headers=HTML)
    assert page.status_code == 200
    assert "carl" in page.text and "first" in page.text and 'href="/devices/' in page.text
    assert "Create" in page.text  # history
    r = client.post(
        f"/bookings/{gid}/edit",
        data={"csrf_token": csrf, "comment": "second", "collaborators": ""},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(f"/bookings/{gid}", headers=HTML).text
    assert "second" in page and "carl" not in page.split("History")[0]
    unknown = client.post(
        f"/bookings/{gid}/edit",
        data={"csrf_token": csrf, "comment": "x", "collaborators": "nobody-here"},
        headers=HTML,
    )
    assert 400 <= unknown.status_code < 500


def test_others_may_not_see_or_change_a_group(client, db, devices, make_user):
    owner = make_user("member", username="owner")
    gid = book(client, owner, (devices[0], 0, 2))["grouped_booking_id"]
    make_user("member", username="eve", password=PASSWORD)
    csrf = sign_in(client, "eve", PASSWORD)
    assert client.get(f"/bookings/{gid}", headers=HTML).status_code == 403
    r = client.post(f"/bookings/{gid}/cancel", data={"csrf_token": csrf}, headers=HTML)
    assert r.status_code == 403
    assert set(statuses(db).values()) == {"CONFIRMED"}
    assert client.get("/bookings/no-such-group", headers=HTML).status_code == 404
    assert client.get("/bookings/" + "x" * 200, headers=HTML).status_code == 404
    # a viewer may look at their list but has no booking actions
    make_user("viewer", username="vic", password=PASSWORD)
    csrf = sign_in(client, "vic", PASSWORD)
    page = client.get("/bookings", headers=HTML)
    assert page.status_code == 200 and "Favorites" not in page.text
    denied = client.post(f"/bookings/{gid}/cancel", data={"csrf_token": csrf}, headers=HTML)
    assert denied.status_code == 403


def test_forms_without_the_csrf_token_are_refused(client, db, devices, mia):
    account, _ = mia
    gid = book(client, account, (devices[0], 0, 2))["grouped_booking_id"]
    r = client.post(f"/bookings/{gid}/cancel", data={}, headers=HTML)
    assert r.status_code == 403
    assert set(statuses(db).values()) == {"CONFIRMED"}


def test_the_group_page_links_devices_and_times(client, db, devices, mia):
    account, _ = mia
    gid = book(client, account, (devices[0], 0, 2))["grouped_booking_id"]
    html = client.get(f"/bookings/{gid}", headers=HTML).text
    assert re.search(rf'href="/devices/{devices[0]}"', html)
    assert at(0).strftime("%Y-%m-%d %H:%M") in html
