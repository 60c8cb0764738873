"""The calendar feed on the profile page: get its secret address, use it, replace it, stop it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from labkeeper.admin.models import AuditLog
from labkeeper.booking import service as bookings
from labkeeper.booking.schemas import BookingCreate, BookingItem
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device, DeviceType
from tests.booking.conftest import principal
from tests.web.conftest import HTML, sign_in

FEED = re.compile(
    r'id="new-feed" type="text" value="(http://127\.0\.0\.1/api/v1/calendar/[^"]+\.ics)"'
)


def _book(db: Any, account: Any) -> None:
    with db.scope() as s:
        kind = DeviceType(name="router", category="infra")
        s.add(kind)
        s.flush()
        device = Device(name="core-rtr-01", device_type_id=kind.id)
        s.add(device)
        s.flush()
        start = utcnow() + timedelta(days=1)
        bookings.create(
            s,
            data=BookingCreate(
                items=[
                    BookingItem(device_id=device.id, start=start, end=start + timedelta(hours=2))
                ],
                comment="ZR+ test",
            ),
            actor=principal(account),
        )


def test_profile_gives_a_calendar_feed_address_that_serves_my_bookings(
    client: Any, make_user: Any, db: Any
) -> None:
    hana = make_user("member", username="hana")
    _book(db, hana)
    csrf = sign_in(client, "hana", hana.password)

    before = client.get("/profile", headers=HTML)
    assert "Get my calendar feed address" in before.text

    made = client.post("/profile/calendar", data={"csrf_token": csrf}, headers=HTML)
    assert made.status_code == 200
    url = FEED.search(made.text).group(1)  # type: ignore[union-attr]
    feed = client.get(url.removeprefix("http://127.0.0.1"))
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    assert "BEGIN:VCALENDAR" in feed.text and "core-rtr-01" in feed.text

    # Shown once: the page afterwards says the feed is on, without the address.
    after = client.get("/profile", headers=HTML)
    assert "Your feed is on" in after.text and url not in after.text

    # A new address replaces the old one.
    again = client.post("/profile/calendar", data={"csrf_token": csrf}, headers=HTML)
    new_url = FEED.search(again.text).group(1)  # type: ignore[union-attr]
    assert new_url != url
    assert client.get(url.removeprefix("http://127.0.0.1")).status_code == 404

    off = client.post(
        "/profile/calendar/revoke", data={"csrf_token": csrf}, headers=HTML, follow_redirects=False
    )
    assert off.status_code == 303
    assert client.get(new_url.removeprefix("http://127.0.0.1")).status_code == 404
    assert "Get my calendar feed address" in client.get("/profile", headers=HTML).text
    with db.scope() as s:
        trail = s.scalars(
            select(AuditLog.action).where(AuditLog.action.like("calendar.%")).order_by(AuditLog.id)
        ).all()
    assert trail == ["calendar.rotate", "calendar.rotate", "calendar.revoke"]


def test_calendar_feed_posts_need_the_form_token(client: Any, make_user: Any) -> None:
    ivo = make_user("viewer", username="ivo")
    sign_in(client, "ivo", ivo.password)
    refused = client.post("/profile/calendar", data={}, headers=HTML)
    assert refused.status_code == 403
    assert FEED.search(refused.text) is None
