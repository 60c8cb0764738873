"""The device list and a device's page through the test client: filters, what holds each
device now, a constant number of queries, and refusals."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from labkeeper.admin.models import AuditLog
from labkeeper.auth.models import User
from labkeeper.backups.models import ConfigBackup
from labkeeper.booking.models import Booking
from labkeeper.core.audit import SYSTEM, Actor
from labkeeper.core.time import utcnow
from labkeeper.inventory import service as inventory_service
from labkeeper.inventory.models import (
    Device,
    DeviceHealthSnapshot,
    DeviceOwnership,
    DeviceTag,
    DeviceType,
    MaintenanceWindow,
    Site,
    Tag,
)
from labkeeper.inventory.schemas import DeviceUpdate
from tests.web.conftest import HTML, counting, sign_in

PASSWORD = "lab-list-pass-1"


@pytest.fixture
def lab(db, make_user) -> dict[str, int]:
    """Routers and servers at two sites: r0 booked now, r1 in maintenance, the rest free."""
    owner = make_user("member", username="mia")
    now = utcnow()
    with db.scope() as s:
        router, server = (
            DeviceType(name="router", category="infra"),
            DeviceType(name="server", category="compute"),
        )
        north, south = Site(name="north"), Site(name="south")
        core = Tag(name="core", color="#336699")
        s.add_all([router, server, north, south, core])
        s.flush()
        rows = [
            Device(name="r0", device_type_id=router.id, site_id=north.id, mgmt_address="127.0.0.1"),
            Device(name="r1", device_type_id=router.id, site_id=north.id),
            Device(name="s0", device_type_id=server.id, site_id=south.id),
            Device(name="s1", device_type_id=server.id, site_id=south.id, status="retired"),
        ]
        s.add_all(rows)
        s.flush()
        ids = {d.name: d.id for d in rows}
        s.add(DeviceTag(device_id=ids["r0"], tag_id=core.id))
        s.add(DeviceTag(device_id=ids["s0"], tag_id=core.id))
        s.add(
            Booking(
                grouped_booking_id="g-now",
                device_id=ids["r0"],
                user_id=owner.id,
                start_time=now - timedelta(hours=1),
                end_time=now + timedelta(hours=2),
                status="ACTIVE",
                comment="ber sweep",
            )
        )
        s.add(
            Booking(
                grouped_booking_id="g-later",
                device_id=ids["r0"],
                user_id=owner.id,
                start_time=now + timedelta(days=1),
                end_time=now + timedelta(days=1, hours=2),
                status="CONFIRMED",
            )
        )
        s.add(
            MaintenanceWindow(
                device_id=ids["r1"],
                start_time=now - timedelta(hours=1),
                end_time=now + timedelta(hours=3),
                reason="new optics",
            )
        )
        s.add(
            DeviceHealthSnapshot(device_id=ids["r0"], status="up", latency_ms=1.5, created_at=now)
        )
        s.add(
            ConfigBackup(
                device_id=ids["r0"],
                version=1,
                content="hostname r0\n",
                content_hash="a" * 64,
                size_bytes=12,
                line_count=1,
                collected_at=now,
            )
        )
    return ids


@pytest.fixture
def viewer(client, make_user) -> str:
    make_user("viewer", username="vic", password=PASSWORD)
    return sign_in(client, "vic", PASSWORD)


def names(html: str) -> list[str]:
    return re.findall(r'class="cell-main" href="/devices/\d+">([^<]+)<', html)


def test_the_list_shows_what_holds_each_device_now(client, lab, viewer):
    page = client.get("/devices", headers=HTML)
    assert page.status_code == 200
    assert names(page.text) == ["r0", "r1", "s0", "s1"]
    row = {n: part for n, part in zip(["r0", "r1", "s0", "s1"], page.text.split("<tr>")[2:])}
    assert "booked" in row["r0"] and "mia until" in row["r0"]
    assert "in maintenance" in row["r1"] and "new optics" in row["r1"]
    assert ">free<" in row["s0"]
    assert "not bookable" in row["s1"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=s", ["s0", "s1"]),
        ("q=127.0.0", ["r0"]),
        ("type=server", ["s0", "s1"]),
        ("site=north", ["r0", "r1"]),
        ("tag=core", ["r0", "s0"]),
        ("status=retired", ["s1"]),
        ("now=free", ["s0", "s1"]),
        ("now=booked", ["r0"]),
        ("now=maintenance", ["r1"]),
        ("type=router&now=free", []),
        ("q=&type=&site=&tag=&status=&now=", ["r0", "r1", "s0", "s1"]),  # the form's "any"
    ],
)
def test_filters(client, lab, viewer, query, expected):
    page = client.get(f"/devices?{query}", headers=HTML)
    assert page.status_code == 200
    assert names(page.text) == expected
    if not expected:
        assert "No device matches" in page.text and "Clear the filters" in page.text


def test_pages_of_the_list(client, lab, viewer):
    first = client.get("/devices?limit=2", headers=HTML).text
    assert names(first) == ["r0", "r1"] and "Showing 1\u20132 of 4 devices" in first
    assert names(client.get("/devices?limit=2&offset=2", headers=HTML).text) == ["s0", "s1"]


def test_the_list_costs_the_same_queries_for_more_devices(client, db, lab, viewer):
    with counting(db) as few:
        assert client.get("/devices", headers=HTML).status_code == 200
    now = utcnow()
    with db.scope() as s:
        kind = s.query(DeviceType).filter_by(name="router").one()
        more = [Device(name=f"x{i:02}", device_type_id=kind.id) for i in range(30)]
        s.add_all(more)
        s.flush()
        for d in more[:10]:
            s.add(
                MaintenanceWindow(
                    device_id=d.id,
                    start_time=now - timedelta(hours=1),
                    end_time=now + timedelta(hours=1),
                )
            )
    with counting(db) as many:
        page = client.get("/devices", headers=HTML)
    assert len(names(page.text)) == 34
    assert len(many) == len(few)


def test_empty_lab_says_how_devices_arrive(client, viewer):
    page = client.get("/devices", headers=HTML)
    assert page.status_code == 200 and "No devices yet" in page.text


def test_bad_filters_are_4xx(client, lab, viewer):
    for query in ("status=melted", "now=sometimes", "limit=0", "offset=-1", "q=" + "x" * 500):
        assert 400 <= client.get(f"/devices?{query}", headers=HTML).status_code < 500, query


def test_a_device_page(client, lab, viewer):
    page = client.get(f"/devices/{lab['r0']}", headers=HTML)
    assert page.status_code == 200
    text = page.text
    assert "ber sweep" in text or "mia" in text
    assert "core" in text and "north" in text and "127.0.0.1:22" in text
    assert "1.5 ms" in text  # the latest health snapshot
    assert f'href="/configurations/devices/{lab["r0"]}"' in text
    assert re.search(r'href="/configurations/\d+">Version 1', text)
    # a viewer sees who holds it but not a link into someone else's booking
    assert "/bookings/g-now" not in text
    maintenance = client.get(f"/devices/{lab['r1']}", headers=HTML).text
    assert "new optics" in maintenance and "under way" in maintenance
    assert "No configuration stored yet" in maintenance


def test_a_device_page_links_my_bookings(client, lab, make_user):
    sign_in(client, "mia", "s3cret-pass!")
    text = client.get(f"/devices/{lab['r0']}", headers=HTML).text
    assert "/bookings/g-now" in text and "/bookings/g-later" in text
    assert 'href="/timeline?q=r0"' in text


def test_missing_devices_and_garbage_ids(client, lab, viewer):
    assert client.get("/devices/999999", headers=HTML).status_code == 404
    assert client.get("/devices/abc", headers=HTML).status_code == 422
    assert client.get("/devices/0", headers=HTML).status_code == 422


def test_signed_out_visitors_are_sent_to_sign_in(client, lab):
    r = client.get("/devices", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


# -- owners and change history -----------------------------------------------------------------


def _actions(db) -> list[str]:
    with db.scope(write=False) as s:
        return list(s.scalars(select(AuditLog.action).order_by(AuditLog.id)))


@pytest.fixture
def admin_csrf(client, make_user) -> str:
    make_user("admin", username="ada", password=PASSWORD)
    return sign_in(client, "ada", PASSWORD)


def test_an_admin_adds_and_revokes_owners(client, db, lab, admin_csrf):
    url = f"/devices/{lab['s0']}"
    before = client.get(url, headers=HTML).text
    assert "Nobody owns this device" in before and 'action="' + url + '/owners"' in before
    r = client.post(
        f"{url}/owners",
        data={"csrf_token": admin_csrf, "username": "mia"},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get(url, headers=HTML).text
    assert "mia is an owner now" in page
    owners = page.split('id="owners-title"')[1].split("</section>")[0]
    assert "mia" in owners and "Revoke" in owners
    # the API sees the same ownership
    with db.scope(write=False) as s:
        mia = s.scalar(select(User).where(User.username == "mia"))
        owned = s.scalars(
            select(DeviceOwnership).where(DeviceOwnership.device_id == lab["s0"])
        ).all()
    assert [(o.owner_id, o.revoked_at) for o in owned] == [(mia.id, None)]
    # twice is refused with the field's message, not a 500
    again = client.post(
        f"{url}/owners", data={"csrf_token": admin_csrf, "username": "mia"}, headers=HTML
    )
    assert again.status_code == 409 and "already owns" in again.text
    assert 'aria-invalid="true"' in again.text or "field-error" in again.text
    r = client.post(
        f"{url}/owners/{mia.id}/revoke",
        data={"csrf_token": admin_csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    after = client.get(url, headers=HTML).text
    assert "mia no longer owns this device" in after and "Nobody owns this device" in after
    with db.scope(write=False) as s:
        row = s.scalar(select(DeviceOwnership).where(DeviceOwnership.device_id == lab["s0"]))
    assert row.revoked_at is not None  # kept as history
    assert {"devices.assign_owner", "devices.revoke_owner"} <= set(_actions(db))
    # revoking again says so and goes back to the page
    r = client.post(
        f"{url}/owners/{mia.id}/revoke",
        data={"csrf_token": admin_csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "does not own" in client.get(url, headers=HTML).text


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("nobody-here", "there is no user called"),
        ("", "required"),
        ("x" * 80, "at most"),
    ],
)
def test_bad_owners_are_4xx(client, lab, admin_csrf, username, message):
    r = client.post(
        f"/devices/{lab['s0']}/owners",
        data={"csrf_token": admin_csrf, "username": username},
        headers=HTML,
    )
    assert 400 <= r.status_code < 500, r.text
    assert message in r.text.lower() or message in r.text
    assert 'value="' + username[:50] in r.text  # what was typed stays in the field


def test_owner_forms_on_missing_devices_and_users(client, lab, admin_csrf):
    data = {"csrf_token": admin_csrf, "username": "mia"}
    assert client.post("/devices/999999/owners", data=data, headers=HTML).status_code == 404
    r = client.post("/devices/999999/owners/1/revoke", data=data, headers=HTML)
    assert r.status_code == 404
    r = client.post(f"/devices/{lab['s0']}/owners/abc/revoke", data=data, headers=HTML)
    assert r.status_code == 422


def test_owners_need_devices_write(client, db, lab, make_user):
    make_user("member", username="max", password=PASSWORD)
    csrf = sign_in(client, "max", PASSWORD)
    page = client.get(f"/devices/{lab['s0']}", headers=HTML).text
    assert "Add the owner" not in page and "Revoke" not in page
    r = client.post(
        f"/devices/{lab['s0']}/owners", data={"csrf_token": csrf, "username": "max"}, headers=HTML
    )
    assert r.status_code == 403
    with db.scope(write=False) as s:
        assert s.scalar(select(DeviceOwnership)) is None
    # and a form without its CSRF token is refused too
    make_user("admin", username="ada", password=PASSWORD)
    sign_in(client, "ada", PASSWORD)
    r = client.post(f"/devices/{lab['s0']}/owners", data={"username": "max"}, headers=HTML)
    assert r.status_code in (400, 403)


def test_the_change_history(client, db, lab, admin_csrf):
    with db.scope(write=False) as s:
        ada = s.scalar(select(User).where(User.username == "ada"))
    actor = Actor(user_id=ada.id, username="ada", role="admin")
    with db.scope() as s:
        for i in range(25):
            inventory_service.update_device(
                s, device_id=lab["s0"], data=DeviceUpdate(rack=f"rack-{i}"), actor=actor
            )
    page = client.get(f"/devices/{lab['s0']}", headers=HTML).text
    history = page.split('id="history-title"')[1].split("</section>")[0]
    assert history.count("<li>") == 20
    assert "rack-24" in history and "rack-23" in history  # newest first
    assert history.index("rack-24") < history.index("rack-10")
    assert ">rack-3<" not in history  # older ones are on the full page
    assert "by ada" in history
    assert f'href="/devices/{lab["s0"]}/history">All 25 changes' in history
    full = client.get(f"/devices/{lab['s0']}/history?limit=20&offset=20", headers=HTML)
    assert full.status_code == 200
    assert full.text.count("<li>") >= 5 and "rack-0" in full.text
    assert "Showing 21\u201325 of 25 changes" in full.text
    # a device without changes says so
    empty = client.get(f"/devices/{lab['r1']}", headers=HTML).text
    assert "No field of this device has changed" in empty
    for bad in ("offset=-1", "limit=0", "limit=abc"):
        r = client.get(f"/devices/{lab['s0']}/history?{bad}", headers=HTML)
        assert 400 <= r.status_code < 500, bad
    assert client.get("/devices/999999/history", headers=HTML).status_code == 404


def test_a_viewer_reads_the_history_without_forms(client, db, lab, viewer):
    with db.scope() as s:
        inventory_service.update_device(
            s, device_id=lab["r0"], data=DeviceUpdate(notes="moved"), actor=SYSTEM
        )
    page = client.get(f"/devices/{lab['r0']}", headers=HTML).text
    assert "moved" in page and "the system" in page
    assert client.get(f"/devices/{lab['r0']}/history", headers=HTML).status_code == 200
