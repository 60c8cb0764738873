"""The admin pages for devices and maintenance through the test client: changes go through the
inventory and maintenance services, collisions with bookings are shown, bad input is a 4xx."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from labkeeper.booking.models import Booking
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device, DeviceTag, DeviceType, MaintenanceWindow, Site, Tag
from tests.web.conftest import HTML, sign_in

API = "/api/v1"
PASSWORD = "admin-pages-1"
DAY = (utcnow() + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def kinds(db) -> None:
    with db.scope() as s:
        s.add_all(
            [
                DeviceType(name="router", category="infra"),
                Site(name="north"),
                Tag(name="core"),
                Tag(name="edge"),
            ]
        )


@pytest.fixture
def csrf(client, make_user, kinds) -> str:
    make_user("admin", username="ada", password=PASSWORD)
    return sign_in(client, "ada", PASSWORD)


def device(db, name: str) -> Device | None:
    with db.scope(write=False) as s:
        return s.scalar(select(Device).where(Device.name == name))


def tags_of(db, device_id: int) -> list[str]:
    with db.scope(write=False) as s:
        return sorted(
            s.scalars(
                select(Tag.name)
                .join(DeviceTag, DeviceTag.tag_id == Tag.id)
                .where(DeviceTag.device_id == device_id)
            )
        )


FORM = {
    "name": "r9",
    "device_type": "router",
    "site": "north",
    "platform": "generic",
    "mgmt_address": "127.0.0.1",
    "ssh_port": "2222",
    "switch_name": "polatis-1",
    "switch_in_port": "3",
    "switch_out_port": "4",
    "tags": "core, edge",
}


def test_create_edit_deactivate_a_device(client, db, csrf):
    assert client.get("/admin/devices", headers=HTML).status_code == 200
    assert "Add a device" in client.get("/admin/devices/new", headers=HTML).text
    r = client.post(
        "/admin/devices", data={**FORM, "csrf_token": csrf}, headers=HTML, follow_redirects=False
    )
    assert r.status_code == 303, r.text[:2000]
    made = device(db, "r9")
    assert made is not None and r.headers["location"] == f"/devices/{made.id}"
    assert (made.ssh_port, made.switch_in_port, made.switch_out_port) == (2222, 3, 4)
    assert tags_of(db, made.id) == ["core", "edge"]
    edit = client.get(f"/admin/devices/{made.id}", headers=HTML).text
    assert 'value="polatis-1"' in edit and "core, edge" in edit
    r = client.post(
        f"/admin/devices/{made.id}",
        data={**FORM, "name": "r9b", "switch_out_port": "", "tags": "edge", "csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:2000]
    changed = device(db, "r9b")
    assert changed is not None and changed.switch_out_port is None
    assert tags_of(db, made.id) == ["edge"]
    r = client.post(
        f"/admin/devices/{made.id}/deactivate",
        data={"csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert device(db, "r9b").status == "retired"  # type: ignore[union-attr]
    assert "Reactivate" in client.get("/admin/devices", headers=HTML).text
    client.post(f"/admin/devices/{made.id}/reactivate", data={"csrf_token": csrf}, headers=HTML)
    assert device(db, "r9b").status == "available"  # type: ignore[union-attr]


def test_bad_device_input_is_shown_on_the_form(client, db, csrf):
    cases = [
        ({**FORM, "name": ""}, 422, "name"),
        ({**FORM, "ssh_port": "ssh"}, 422, "ssh_port"),
        ({**FORM, "ssh_port": "70000"}, 422, "ssh_port"),
        ({**FORM, "device_type": "toaster"}, 422, "no device type called"),
        ({**FORM, "tags": "core, nope"}, 422, "nope"),
        ({**FORM, "mgmt_address": "not an address!"}, 422, "mgmt_address"),
    ]
    for data, status, seen in cases:
        r = client.post("/admin/devices", data={**data, "csrf_token": csrf}, headers=HTML)
        assert r.status_code == status, (data, r.status_code)
        assert seen in r.text
    client.post("/admin/devices", data={**FORM, "csrf_token": csrf}, headers=HTML)
    taken = client.post(
        "/admin/devices", data={**FORM, "name": "r10", "csrf_token": csrf}, headers=HTML
    )
    assert taken.status_code == 409 and "already used by device" in taken.text
    again = client.post("/admin/devices", data={**FORM, "csrf_token": csrf}, headers=HTML)
    assert again.status_code == 409 and "exists already" in again.text
    assert client.get("/admin/devices/99999", headers=HTML).status_code == 404


def test_maintenance_over_bookings_lists_them_and_ends(client, db, csrf, make_user):
    r = client.post("/admin/devices", data={**FORM, "csrf_token": csrf}, headers=HTML)
    dev = device(db, "r9")
    assert dev is not None
    mia = make_user("member", username="mia")
    booked = client.post(
        f"{API}/bookings",
        json={
            "items": [{"device_id": dev.id, "start": at(1).isoformat(), "end": at(3).isoformat()}]
        },
        headers=mia.headers,
    )
    assert booked.status_code == 201, booked.text
    empty = client.get("/admin/maintenance", headers=HTML).text
    assert "No maintenance planned" in empty
    prefilled = client.get("/admin/maintenance?device=r9", headers=HTML).text
    assert 'value="r9"' in prefilled
    r = client.post(
        "/admin/maintenance",
        data={
            "csrf_token": csrf,
            "devices": "r9",
            "start": local(at(0)),
            "end": local(at(2)),
            "reason": "new optics",
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    listing = client.get("/admin/maintenance", headers=HTML).text
    assert "new optics" in listing and "mia" in listing
    assert f"/bookings/{booked.json()['grouped_booking_id']}" in listing
    assert "1 booking collide" in listing  # the flash
    # a booking in that window is now refused by the booking service
    clash = client.post(
        f"{API}/bookings",
        json={
            "items": [{"device_id": dev.id, "start": at(0).isoformat(), "end": at(0.5).isoformat()}]
        },
        headers=mia.headers,
    )
    assert clash.status_code == 409
    with db.scope(write=False) as s:
        window_id = s.scalar(select(MaintenanceWindow.id))
        assert s.scalar(select(Booking.maintenance_conflict_id)) == window_id
    r = client.post(
        f"/admin/maintenance/{window_id}/end",
        data={"csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    with db.scope(write=False) as s:
        assert s.scalar(select(MaintenanceWindow.cancelled_at)) is not None
        assert s.scalar(select(Booking.maintenance_conflict_id)) is None
    again = client.post(
        f"/admin/maintenance/{window_id}/end", data={"csrf_token": csrf}, headers=HTML
    )
    assert again.status_code == 409 and "cancelled already" in again.text
    assert "new optics" in client.get("/admin/maintenance?show=all", headers=HTML).text


def test_bad_maintenance_input_is_a_4xx(client, db, csrf):
    client.post("/admin/devices", data={**FORM, "csrf_token": csrf}, headers=HTML)
    base = {"csrf_token": csrf, "devices": "r9", "start": local(at(0)), "end": local(at(2))}
    cases = [
        ({**base, "devices": ""}, "Name at least one device"),
        ({**base, "devices": "r9, ghost"}, "No device called ghost"),
        ({**base, "start": "soon"}, "Use a date and time"),
        ({**base, "end": local(at(-1))}, "after the start"),
        ({**base, "start": local(at(-100)), "end": local(at(-99))}, "over already"),
    ]
    for data, seen in cases:
        r = client.post("/admin/maintenance", data=data, headers=HTML)
        assert 400 <= r.status_code < 500, (data, r.status_code)
        assert seen in r.text, (data, r.text[:3000])
    assert client.get("/admin/maintenance?show=bogus", headers=HTML).status_code == 422


def test_members_may_not_open_the_admin_pages(client, db, kinds, make_user):
    make_user("member", username="mo", password=PASSWORD)
    csrf = sign_in(client, "mo", PASSWORD)
    for url in ("/admin/devices", "/admin/devices/new", "/admin/maintenance"):
        assert client.get(url, headers=HTML).status_code == 403, url
    r = client.post("/admin/devices", data={**FORM, "csrf_token": csrf}, headers=HTML)
    assert r.status_code == 403 and device(db, "r9") is None
    assert "/admin/devices" not in client.get("/devices", headers=HTML).text
