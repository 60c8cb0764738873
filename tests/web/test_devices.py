"""The device list and a device's page through the test client: filters, what holds each
device now, a constant number of queries, and refusals."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from labkeeper.backups.models import ConfigBackup
from labkeeper.booking.models import Booking
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import (
    Device,
    DeviceHealthSnapshot,
    DeviceTag,
    DeviceType,
    MaintenanceWindow,
    Site,
    Tag,
)
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
