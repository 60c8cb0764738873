"""Booking in the browser: a member picks slots on the timeline, an approver approves, the member
sees the booking confirmed. Saves docs/screenshots/timeline.png and approvals.png."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from labkeeper.admin import service as settings_service
from labkeeper.booking import service as booking_service
from labkeeper.booking.schemas import BookingCreate, BookingItem
from labkeeper.core.audit import SYSTEM
from labkeeper.core.time import utcnow
from labkeeper.inventory import service as inventory
from labkeeper.inventory.schemas import DeviceCreate, DeviceTypeCreate, SiteCreate
from tests.web.conftest import browser_sign_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

TOMORROW = (utcnow() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _lab(db, make_user) -> dict[str, int]:
    """Approval always required; a few devices, some booked by someone else."""
    from tests.booking.conftest import principal

    otto = make_user("member", username="otto")
    ids: dict[str, int] = {}
    with db.scope() as s:
        settings_service.put(s, key="approval.mode", value="always", actor=SYSTEM)
        inventory.create_site(s, data=SiteCreate(name="dublin"), actor=SYSTEM)
        for name, category in (("roadm", "optical"), ("server", "compute")):
            inventory.create_device_type(
                s, data=DeviceTypeCreate(name=name, category=category), actor=SYSTEM
            )
        for name, kind in (
            ("compute-01", "server"),
            ("compute-02", "server"),
            ("roadm-cork-1", "roadm"),
            ("roadm-dublin-1", "roadm"),
            ("roadm-dublin-2", "roadm"),
        ):
            device = inventory.create_device(
                s, data=DeviceCreate(name=name, device_type=kind, site="dublin"), actor=SYSTEM
            )
            ids[name] = device.id
        for name, start, hours in (("compute-01", 3, 5), ("roadm-cork-1", 14, 6)):
            booking_service.create(
                s,
                data=BookingCreate(
                    items=[
                        BookingItem(
                            device_id=ids[name],
                            start=TOMORROW + timedelta(hours=start),
                            end=TOMORROW + timedelta(hours=start + hours),
                        )
                    ],
                    comment="otto's run",
                ),
                actor=principal(otto),
            )
    return ids


def _slot_x(box: dict[str, float], slot: int, slots: int = 24) -> float:
    return box["x"] + box["width"] * (slot + 0.5) / slots


def test_member_books_two_devices_approver_approves_member_sees_it_confirmed(
    page, browser, live_server, make_user, db
):
    _lab(db, make_user)
    make_user("member", username="mia", password="booking-pass-1")
    make_user("approver", username="apu", password="approve-pass-1")

    browser_sign_in(page, "mia", "booking-pass-1")
    page.get_by_role("link", name="Timeline").click()
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    page.get_by_role("link", name="Day", exact=True).click()
    expect(page).to_have_url(re.compile(r"view=day"))
    page.goto(f"/timeline?view=day&start={TOMORROW.date().isoformat()}")
    page.evaluate("window.localStorage.clear()")
    page.reload()
    expect(page.get_by_text("Nothing picked yet.")).to_be_visible()

    # Drag across 10:00-12:00 on roadm-dublin-1 with the mouse.
    lane = page.get_by_role("group", name=re.compile(r"^roadm-dublin-1:"))
    box = lane.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(_slot_x(box, 10), y)
    page.mouse.down()
    page.mouse.move(_slot_x(box, 11), y, steps=4)
    page.mouse.up()
    cart = page.get_by_role("list", name="Slots in your cart")
    expect(cart.get_by_role("listitem")).to_have_count(1)
    expect(cart).to_contain_text("roadm-dublin-1")

    # The same hours on roadm-dublin-2 with the keyboard only.
    other = page.get_by_role("group", name=re.compile(r"^roadm-dublin-2:"))
    other.focus()
    page.keyboard.press("Home")
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Enter")
    expect(cart.get_by_role("listitem")).to_have_count(2)
    expect(cart).to_contain_text("roadm-dublin-2")

    # A taken slot is refused before it reaches the cart.
    busy = page.get_by_role("group", name=re.compile(r"^compute-01:"))
    busy_box = busy.bounding_box()
    page.mouse.click(_slot_x(busy_box, 4), busy_box["y"] + busy_box["height"] / 2)
    expect(cart.get_by_role("listitem")).to_have_count(2)

    page.get_by_label("Comment").fill("BER test of the new line cards")
    page.get_by_role("button", name="Check for conflicts").click()
    expect(page.get_by_text("Every slot is free")).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "timeline")

    page.get_by_role("button", name="Book", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Booked 2 slots: waiting for approval")
    landing = page.url
    booking_page = "/bookings/" in landing

    # The approver approves in the queue.
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    approver = context.new_page()
    try:
        browser_sign_in(approver, "apu", "approve-pass-1")
        approver.goto("/admin/approvals")
        expect(approver.get_by_role("heading", name="Administration")).to_be_visible()
        request = approver.get_by_role("checkbox", name=re.compile(r"^Request of mia"))
        expect(request).to_have_count(1)
        request.check()
        approver.get_by_label("Reason for declining").focus()
        approver.evaluate("window.scrollTo(0, 0)")
        screenshot(approver, "approvals")
        approver.get_by_role("button", name="Approve selected").click()
        expect(approver.get_by_role("status")).to_contain_text("Approved 1 request")
        expect(approver.get_by_role("checkbox", name=re.compile(r"^Request of mia"))).to_have_count(
            0
        )
        expect(
            approver.get_by_role("checkbox", name=re.compile(r"^Request of otto"))
        ).to_have_count(2)
    finally:
        context.close()

    # The member sees it confirmed.
    page.goto(landing)
    if booking_page:
        expect(page.get_by_text(re.compile("confirmed", re.I)).first).to_be_visible()
    else:
        mine = page.locator(".bar-confirmed.bar-mine")
        expect(mine).to_have_count(2)
        expect(mine.first).to_have_attribute("title", re.compile(r"^Confirmed, booked by you"))
