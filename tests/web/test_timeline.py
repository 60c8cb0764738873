"""The timeline page through the test client: the grid, filters, the cart, conflicts, waitlist."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from labkeeper.admin import service as settings_service
from labkeeper.booking.models import Booking, BookingCollaborator
from labkeeper.core.audit import SYSTEM
from labkeeper.core.time import utcnow
from labkeeper.inventory import service as inventory
from labkeeper.inventory.models import Device, DeviceType
from labkeeper.inventory.schemas import DeviceCreate, DeviceTypeCreate, SiteCreate, TagCreate
from tests.web.conftest import HTML, counting, sign_in

API = "/api/v1"
# Tomorrow at 10:00 UTC: far enough ahead for any notice rule, on every lab time zone.
DAY = (utcnow() + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def slot(device: int, start: float, end: float) -> str:
    """A cart item as the page's script posts it."""
    return f"{device}|{at(start).isoformat()}|{at(end).isoformat()}"


@dataclass
class Lab:
    ids: dict[str, int]


@pytest.fixture
def lab(db) -> Lab:
    """Two sites, two types, a tag; a device whose type cannot be booked."""
    with db.scope() as s:
        inventory.create_site(s, data=SiteCreate(name="dublin"), actor=SYSTEM)
        inventory.create_site(s, data=SiteCreate(name="cork"), actor=SYSTEM)
        inventory.create_tag(s, data=TagCreate(name="core"), actor=SYSTEM)
        inventory.create_device_type(
            s, data=DeviceTypeCreate(name="roadm", category="optical"), actor=SYSTEM
        )
        inventory.create_device_type(
            s, data=DeviceTypeCreate(name="server", category="compute"), actor=SYSTEM
        )
        inventory.create_device_type(
            s,
            data=DeviceTypeCreate(name="panel", category="infra", is_schedulable=False),
            actor=SYSTEM,
        )
        ids = {}
        for name, kind, site, tags in (
            ("roadm-dublin-1", "roadm", "dublin", ["core"]),
            ("roadm-cork-1", "roadm", "cork", []),
            ("server-01", "server", "dublin", []),
            ("patch-1", "panel", "cork", []),
        ):
            device = inventory.create_device(
                s,
                data=DeviceCreate(name=name, device_type=kind, site=site, tags=tags),
                actor=SYSTEM,
            )
            ids[name] = device.id
    return Lab(ids)


def _signed_in(client, make_user, role: str = "member", username: str = "mia") -> tuple[Any, str]:
    account = make_user(role, username=username, password="timeline-pass-1")
    return account, sign_in(client, username, "timeline-pass-1")


def _set(db, key: str, value: Any) -> None:
    with db.scope() as s:
        settings_service.put(s, key=key, value=value, actor=SYSTEM)


def _rows(db) -> list[Booking]:
    with db.scope(write=False) as s:
        return list(s.scalars(select(Booking).order_by(Booking.id)))


def test_the_grid_shows_devices_bookings_maintenance_and_mine(client, make_user, db, lab):
    other = make_user("member", username="otto")
    me, _ = _signed_in(client, make_user)
    d1, d2 = lab.ids["roadm-dublin-1"], lab.ids["roadm-cork-1"]
    for account, device, start in ((other, d1, 0), (me, d2, 2)):
        r = client.post(
            f"{API}/bookings",
            json={
                "items": [
                    {
                        "device_id": device,
                        "start": at(start).isoformat(),
                        "end": at(start + 3).isoformat(),
                    }
                ]
            },
            headers=account.headers,
        )
        assert r.status_code == 201, r.text
    admin = make_user("admin")
    r = client.post(
        f"{API}/maintenance",
        json={
            "device_ids": [lab.ids["server-01"]],
            "start": at(30).isoformat(),
            "end": at(34).isoformat(),
            "reason": "new line card",
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text

    page = client.get(f"/timeline?view=2weeks&start={DAY.date().isoformat()}", headers=HTML)
    assert page.status_code == 200
    html = page.text
    for name in ("roadm-dublin-1", "roadm-cork-1", "server-01", "patch-1"):
        assert name in html
    assert "booked by otto" in html
    assert re.search(r'class="bar bar-confirmed bar-mine"', html)  # my own booking stands out
    assert "booked by you" in html
    assert "Maintenance (new line card)" in html
    assert "not bookable" in html  # the panel's row says why it cannot be picked
    assert 'id="cart-form"' in html and 'action="/timeline/book"' in html
    # Day and week views, and moving along.
    day = client.get(f"/timeline?view=day&start={DAY.date().isoformat()}", headers=HTML)
    assert day.status_code == 200 and "booked by otto" in day.text
    assert 'data-slots="24"' in day.text
    week = client.get("/timeline?view=week", headers=HTML)
    assert week.status_code == 200 and 'rel="next"' in week.text
    assert "<b>" in week.text


def test_filters_narrow_the_devices(client, make_user, db, lab):
    _signed_in(client, make_user)

    def names(query: str) -> set[str]:
        html = client.get("/timeline" + query, headers=HTML).text
        return set(re.findall(r'<a href="/devices/\d+">([^<]+)</a>', html))

    everything = {"roadm-dublin-1", "roadm-cork-1", "server-01", "patch-1"}
    assert names("") == everything
    assert names("?type=roadm") == {"roadm-dublin-1", "roadm-cork-1"}
    assert names("?site=dublin") == {"roadm-dublin-1", "server-01"}
    assert names("?tag=core") == {"roadm-dublin-1"}
    assert names("?q=server") == {"server-01"}
    assert names("?type=roadm&site=cork") == {"roadm-cork-1"}
    empty = client.get("/timeline?q=nothing-like-this", headers=HTML)
    assert empty.status_code == 200 and "No device matches" in empty.text
    paged = client.get("/timeline?limit=2", headers=HTML).text
    assert "Showing 1\N{EN DASH}2 of 4 devices" in paged


def test_a_viewer_sees_the_timeline_without_a_cart(client, make_user, lab):
    _signed_in(client, make_user, role="viewer", username="vic")
    page = client.get("/timeline", headers=HTML)
    assert page.status_code == 200 and "roadm-dublin-1" in page.text
    assert 'id="cart-form"' not in page.text


def test_query_count_does_not_grow_with_the_devices(client, make_user, db, lab):
    other = make_user("member", username="otto")
    me, _ = _signed_in(client, make_user)

    def add_devices(count: int, start: int) -> None:
        with db.scope() as s:
            kind = s.scalar(select(DeviceType).where(DeviceType.name == "roadm"))
            devices = [
                Device(name=f"bulk-{start + i:04d}", device_type_id=kind.id) for i in range(count)
            ]
            s.add_all(devices)
            s.flush()
            s.add_all(
                Booking(
                    grouped_booking_id=f"g-{d.id}",
                    device_id=d.id,
                    user_id=other.id,
                    start_time=at(i % 48),
                    end_time=at(i % 48 + 2),
                    status="CONFIRMED",
                )
                for i, d in enumerate(devices)
            )
            # every other one is shared with me: marked on the grid, at no query per row
            s.add_all(
                BookingCollaborator(grouped_booking_id=f"g-{d.id}", user_id=me.id)
                for d in devices[::2]
            )

    def queries() -> int:
        with counting(db) as seen:
            r = client.get("/timeline?view=2weeks&limit=500", headers=HTML)
        assert r.status_code == 200
        return len(seen)

    add_devices(5, 0)
    small = queries()
    add_devices(60, 100)
    big = queries()
    assert big == small, (small, big)
    html = client.get("/timeline?view=2weeks&limit=500", headers=HTML).text
    assert html.count("bar-shared") == 33 + 1  # the 33 shared bars and the legend's swatch
    assert small <= 20


def _book(client, csrf: str, *items: str, **extra: str):
    return client.post(
        "/timeline/book",
        data={"csrf_token": csrf, "item": list(items), **extra},
        headers=HTML,
        follow_redirects=False,
    )


def test_the_cart_books_one_group_with_collaborators(client, make_user, db, lab):
    make_user("member", username="colleague")
    _, csrf = _signed_in(client, make_user)
    d1, d2 = lab.ids["roadm-dublin-1"], lab.ids["server-01"]
    r = _book(
        client, csrf, slot(d1, 0, 3), slot(d2, 1, 4), collaborators="colleague", comment="ber test"
    )
    assert r.status_code == 303, r.text[:2000]
    rows = _rows(db)
    assert len(rows) == 2 and len({b.grouped_booking_id for b in rows}) == 1
    assert {b.device_id for b in rows} == {d1, d2}
    assert all(b.comment == "ber test" for b in rows)
    gid = rows[0].grouped_booking_id
    with db.scope(write=False) as s:
        assert s.scalars(
            select(BookingCollaborator).where(BookingCollaborator.grouped_booking_id == gid)
        ).all()
    location = r.headers["location"]
    pages = client.app.state.web_pages
    if "/bookings/{grouped_booking_id}" in pages:
        assert location == f"/bookings/{gid}"
    else:
        assert location.startswith("/timeline")
        landed = client.get(location, headers=HTML)
        assert "Booked 2 slots" in landed.text
        assert "bar-mine" in landed.text


def test_bookings_shared_with_me_are_marked_like_my_own(client, make_user, db, lab):
    owner = make_user("member", username="otto")
    make_user("member", username="sam")
    _signed_in(client, make_user)  # mia
    d1, d2 = lab.ids["roadm-dublin-1"], lab.ids["roadm-cork-1"]
    gids = []
    for device, collaborator in ((d1, "mia"), (d2, "sam")):
        item = {"device_id": device, "start": at(0).isoformat(), "end": at(2).isoformat()}
        r = client.post(
            f"{API}/bookings",
            json={"items": [item], "collaborators": [collaborator]},
            headers=owner.headers,
        )
        assert r.status_code == 201, r.text
        gids.append(r.json()["grouped_booking_id"])
    html = client.get(f"/timeline?view=week&start={DAY.date().isoformat()}", headers=HTML).text
    shared = re.findall(r'<a class="bar [^"]*bar-shared"[^>]*>', html)
    assert len(shared) == 1 and f'href="/bookings/{gids[0]}"' in shared[0]
    assert "booked by otto, shared with you" in shared[0]
    # otto's booking with sam is neither mine nor shared with me: no mark, no link
    assert f"/bookings/{gids[1]}" not in html
    assert html.count("shared with you") == 2  # its tooltip and its screen-reader text
    assert "Shared with you" in html  # the legend
    # a viewer who shares nothing sees both as otto's
    make_user("viewer", username="vic", password="timeline-pass-1")
    sign_in(client, "vic", "timeline-pass-1")
    html = client.get(f"/timeline?view=week&start={DAY.date().isoformat()}", headers=HTML).text
    assert "Signed in as <strong>vic</strong>" in html
    assert "shared with you" not in html and html.count("booked by otto") == 4


def test_a_slot_typed_in_the_lab_time_zone_is_booked_there(client, make_user, db, lab):
    _set(db, "general.lab_timezone", "Europe/Dublin")
    _, csrf = _signed_in(client, make_user)
    day = DAY.date().isoformat()
    r = _book(client, csrf, f"{lab.ids['roadm-cork-1']}|{day}T09:00|{day}T11:00")
    assert r.status_code == 303
    row = _rows(db)[0]
    from zoneinfo import ZoneInfo

    local = row.start_time.astimezone(ZoneInfo("Europe/Dublin"))
    assert (local.hour, local.minute) == (9, 0)


def test_conflicts_are_shown_before_and_on_booking_and_the_waitlist_is_offered(
    client, make_user, db, lab
):
    other = make_user("member", username="otto")
    _, csrf = _signed_in(client, make_user)
    d1, d2 = lab.ids["roadm-dublin-1"], lab.ids["roadm-cork-1"]
    r = client.post(
        f"{API}/bookings",
        json={"items": [{"device_id": d1, "start": at(0).isoformat(), "end": at(4).isoformat()}]},
        headers=other.headers,
    )
    assert r.status_code == 201

    check = client.post(
        "/timeline/check",
        data={"csrf_token": csrf, "item": [slot(d1, 2, 5), slot(d2, 2, 5)]},
        headers=HTML,
    )
    assert check.status_code == 200
    assert "1 of 2 slots cannot be booked" in check.text
    assert "booking of otto" in check.text and "free" in check.text

    refused = _book(client, csrf, slot(d1, 2, 5), slot(d2, 2, 5))
    assert refused.status_code == 409
    assert "Some of these slots are taken" in refused.text
    assert "otto" in refused.text and "Join the waitlist" in refused.text
    assert len(_rows(db)) == 1  # all or nothing

    queued = _book(client, csrf, slot(d1, 2, 5), slot(d2, 2, 5), waitlist="1")
    assert queued.status_code == 303
    mine = [b for b in _rows(db) if b.user_id != other.id]
    assert sorted(b.status for b in mine) == ["CONFIRMED", "CONFLICTING"]


def test_bad_carts_are_4xx_pages_never_500(client, make_user, db, lab):
    _, csrf = _signed_in(client, make_user)
    d1 = lab.ids["roadm-dublin-1"]
    cases = [
        ((), "The cart is empty"),
        (("garbage",), "could not be read"),
        ((f"{d1}|2030-99-99T00:00|2030-01-01T00:00",), "could not be read"),
        ((slot(d1, 3, 1),), "end must be after the start"),
        ((f"{d1}|{(utcnow() - timedelta(days=3)).isoformat()}|{utcnow().isoformat()}",), "past"),
        ((slot(999999, 0, 1),), "no device with id 999999"),
        ((slot(lab.ids["patch-1"], 0, 1),), "cannot be booked"),
        ((slot(d1, 0, 2), slot(d1, 1, 3)), "twice"),
    ]
    for items, message in cases:
        r = _book(client, csrf, *items)
        assert 400 <= r.status_code < 500, (items, r.status_code)
        assert message.lower() in r.text.lower(), (items, r.text[-3000:])
    unknown = _book(client, csrf, slot(d1, 0, 1), collaborators="nobody-like-this")
    assert unknown.status_code == 422 and "No such user: nobody-like-this" in unknown.text
    too_many = _book(client, csrf, *[slot(d1, i, i + 0.5) for i in range(101)])
    assert too_many.status_code == 422 and "at most 100" in too_many.text
    check = client.post("/timeline/check", data={"csrf_token": csrf, "item": "x"}, headers=HTML)
    assert check.status_code == 422 and "could not be read" in check.text
    assert _rows(db) == []
    # The query string too.
    for query in (
        "?view=month",
        "?start=yesterday",
        "?start=9999-12-31",
        "?limit=0",
        "?limit=100000",
        "?offset=-1",
        "?q=" + "x" * 300,
    ):
        r = client.get("/timeline" + query, headers=HTML)
        assert 400 <= r.status_code < 500, (query, r.status_code)
    # No CSRF token: refused before anything happens.
    r = client.post("/timeline/book", data={"item": slot(d1, 0, 1)}, headers=HTML)
    assert r.status_code == 403


def test_booking_needs_bookings_write(client, make_user, lab):
    _, csrf = _signed_in(client, make_user, role="viewer", username="vic")
    r = _book(client, csrf, slot(lab.ids["roadm-dublin-1"], 0, 1))
    assert r.status_code == 403
