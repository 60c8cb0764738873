"""Devices and my bookings in headless Chromium: filter the list, open a device, cancel a
booking from /bookings. Saves docs/screenshots/devices.png, device.png and my-bookings.png."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from labkeeper.booking import service as bookings
from labkeeper.booking.models import Booking
from labkeeper.booking.schemas import BookingCreate, BookingItem
from labkeeper.core.audit import SYSTEM
from labkeeper.core.time import utcnow
from labkeeper.inventory import service as inventory
from labkeeper.inventory.models import DeviceHealthSnapshot, MaintenanceWindow
from labkeeper.inventory.schemas import DeviceCreate, DeviceTypeCreate, SiteCreate, TagCreate
from tests.web.conftest import browser_sign_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

PASSWORD = "analytical-engine-1"


def _lab(db, user) -> dict[str, int]:
    """A small lab: routers and servers at two sites, one booked now, one in maintenance."""
    now = utcnow().replace(second=0, microsecond=0)
    with db.scope() as s:
        for name, category in (("roadm", "optical"), ("router", "infra"), ("server", "compute")):
            inventory.create_device_type(
                s, data=DeviceTypeCreate(name=name, category=category), actor=SYSTEM
            )
        for site in ("dublin", "cork"):
            inventory.create_site(s, data=SiteCreate(name=site), actor=SYSTEM)
        for tag in ("core", "edge"):
            inventory.create_tag(s, data=TagCreate(name=tag), actor=SYSTEM)
        ids = {}
        for name, kind, site, tags, address in (
            ("roadm-dublin-1", "roadm", "dublin", ["core"], "127.0.0.1"),
            ("roadm-dublin-2", "roadm", "dublin", ["core"], "127.0.0.1"),
            ("roadm-cork-1", "roadm", "cork", ["edge"], None),
            ("router-cork-1", "router", "cork", ["edge"], "127.0.0.1"),
            ("compute-01", "server", "dublin", [], None),
            ("compute-02", "server", "cork", [], None),
        ):
            row = inventory.create_device(
                s,
                data=DeviceCreate(
                    name=name,
                    device_type=kind,
                    site=site,
                    tags=tags,
                    mgmt_address=address,
                    platform="generic",
                ),
                actor=SYSTEM,
            )
            ids[name] = row.id
        s.add(
            MaintenanceWindow(
                device_id=ids["roadm-cork-1"],
                start_time=now - timedelta(hours=1),
                end_time=now + timedelta(hours=5),
                reason="amplifier swap",
            )
        )
        s.add(
            DeviceHealthSnapshot(
                device_id=ids["roadm-dublin-1"], status="up", latency_ms=0.8, created_at=now
            )
        )
    from labkeeper.auth.deps import Principal

    actor = Principal(
        user_id=user.id,
        username=user.username,
        role="member",
        permissions=frozenset({"bookings:write", "devices:read"}),
    )
    with db.scope() as s:
        for device, start, hours, comment in (
            ("roadm-dublin-1", 26, 4, "BER sweep over the ring"),
            ("compute-01", 50, 3, "traffic generator"),
        ):
            begin = now.replace(minute=0) + timedelta(hours=start)
            bookings.create(
                s,
                data=BookingCreate(
                    items=[
                        BookingItem(
                            device_id=ids[device], start=begin, end=begin + timedelta(hours=hours)
                        )
                    ],
                    comment=comment,
                ),
                actor=actor,
            )
    with db.scope() as s:  # one under way now, as the lifecycle would have made it
        s.add(
            Booking(
                grouped_booking_id="demo-active",
                device_id=ids["roadm-dublin-2"],
                user_id=user.id,
                start_time=now - timedelta(hours=2),
                end_time=now + timedelta(hours=2),
                status="ACTIVE",
                comment="link budget check",
            )
        )
    return ids


def test_filter_devices_open_one_and_cancel_a_booking(page, make_user, db):
    ada = make_user("admin", username="ada", password=PASSWORD)
    ids = _lab(db, ada)
    browser_sign_in(page, "ada", PASSWORD)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Devices").click()
    expect(page.get_by_role("heading", name="Devices", exact=True)).to_be_visible()
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(6)
    expect(rows.filter(has_text="roadm-dublin-2")).to_contain_text("ada until")
    expect(rows.filter(has_text="roadm-cork-1")).to_contain_text("amplifier swap")
    screenshot(page, "devices")

    page.get_by_label("Site").select_option("dublin")
    page.get_by_label("Right now").select_option("free")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"site=dublin"))
    expect(rows).to_have_count(2)  # roadm-dublin-1 and compute-01; roadm-dublin-2 is in use
    expect(rows.filter(has_text="roadm-dublin-2")).to_have_count(0)

    page.get_by_role("link", name="roadm-dublin-1").click()
    expect(page.get_by_role("heading", name=re.compile("roadm-dublin-1"))).to_be_visible()
    expect(page.get_by_text("BER sweep over the ring")).to_be_visible()
    expect(page.get_by_text("0.8 ms", exact=False)).to_be_visible()
    screenshot(page, "device")

    page.goto("/bookings")
    groups = page.locator(".group-list").first.locator("> li")
    expect(groups).to_have_count(2)
    screenshot(page, "my-bookings")
    page.once("dialog", lambda dialog: dialog.accept())
    groups.filter(has_text="roadm-dublin-1").get_by_role(
        "button", name=re.compile("^Cancel")
    ).click()
    expect(page.get_by_role("status")).to_contain_text("Booking cancelled")
    expect(groups).to_have_count(1)
    with db.scope(write=False) as s:
        status = s.scalar(select(Booking.status).where(Booking.device_id == ids["roadm-dublin-1"]))
    assert status == "CANCELLED"
