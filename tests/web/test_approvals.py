"""The approvers' pages through the test client: the approvals queue and the conflicts list."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from labkeeper.admin import service as settings_service
from labkeeper.booking.models import Booking
from labkeeper.core.audit import SYSTEM
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device, DeviceType
from tests.web.conftest import HTML, counting, sign_in

API = "/api/v1"
DAY = (utcnow() + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


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


@pytest.fixture
def always(db) -> None:
    """Every booking waits for an approver."""
    with db.scope() as s:
        settings_service.put(s, key="approval.mode", value="always", actor=SYSTEM)


def _request(client, account, *items: tuple[int, float, float], expect: int = 201, **body) -> Any:
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


def _statuses(db) -> dict[int, str]:
    with db.scope(write=False) as s:
        return dict(s.execute(select(Booking.id, Booking.status)).all())


def _approver(client, make_user) -> str:
    make_user("approver", username="apu", password="approve-pass-1")
    return sign_in(client, "apu", "approve-pass-1")


def _boxes(html: str) -> list[str]:
    return re.findall(r'name="booking" value="([^"]+)"', html)


def test_the_queue_lists_pending_groups_and_approves_in_bulk(
    client, make_user, db, devices, always
):
    mia, max_ = make_user("member", username="mia"), make_user("member", username="max")
    first = _request(client, mia, (devices[0], 0, 3), (devices[1], 0, 3), comment="ber run")
    second = _request(client, max_, (devices[2], 1, 2))
    third = _request(client, max_, (devices[3], 1, 2))
    csrf = _approver(client, make_user)

    page = client.get("/admin/approvals", headers=HTML)
    assert page.status_code == 200
    assert "mia" in page.text and "max" in page.text and "ber run" in page.text
    assert "r0, r1" in page.text and "2 devices" in page.text
    boxes = _boxes(page.text)
    assert len(boxes) == 3
    ids = {b["booking_id"] for b in first["bookings"] + second["bookings"]}
    chosen = [b for b in boxes if {int(i) for i in b.split(",")} <= ids]
    r = client.post(
        "/admin/approvals/approve",
        data={"csrf_token": csrf, "booking": chosen},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/approvals"
    landed = client.get("/admin/approvals", headers=HTML)
    assert "Approved 2 requests" in landed.text
    statuses = _statuses(db)
    assert {statuses[i] for i in ids} == {"CONFIRMED"}
    assert statuses[third["bookings"][0]["booking_id"]] == "PENDING"
    assert len(_boxes(landed.text)) == 1


def test_declining_needs_a_reason_and_tells_the_requester(client, make_user, db, devices, always):
    mia = make_user("member", username="mia")
    group = _request(client, mia, (devices[0], 0, 3))
    csrf = _approver(client, make_user)
    box = _boxes(client.get("/admin/approvals", headers=HTML).text)[0]
    no_reason = client.post(
        "/admin/approvals/decline", data={"csrf_token": csrf, "booking": box}, headers=HTML
    )
    assert no_reason.status_code == 422
    assert "Say why these requests are declined" in no_reason.text
    assert "checked" in no_reason.text  # the choice is kept
    ok = client.post(
        "/admin/approvals/decline",
        data={"csrf_token": csrf, "booking": box, "reason": "lab closed that day"},
        headers=HTML,
        follow_redirects=False,
    )
    assert ok.status_code == 303
    booking_id = group["bookings"][0]["booking_id"]
    assert _statuses(db)[booking_id] == "REJECTED"
    seen = client.get(f"{API}/bookings/{booking_id}", headers=mia.headers).json()
    assert seen["decision_reason"] == "lab closed that day"
    empty = client.get("/admin/approvals", headers=HTML)
    assert "Nothing waits for approval" in empty.text


def test_bad_decisions_are_4xx_never_500(client, make_user, db, devices, always):
    mia = make_user("member", username="mia")
    group = _request(client, mia, (devices[0], 0, 3))
    csrf = _approver(client, make_user)
    for data in (
        {},
        {"booking": "garbage"},
        {"booking": "99999999"},
        {"booking": ",".join(str(i) for i in range(1, 600))},
    ):
        r = client.post("/admin/approvals/approve", data={"csrf_token": csrf, **data}, headers=HTML)
        assert 400 <= r.status_code < 500, (data, r.status_code)
    booking_id = group["bookings"][0]["booking_id"]
    client.post(
        "/admin/approvals/approve",
        data={"csrf_token": csrf, "booking": str(booking_id)},
        headers=HTML,
    )
    again = client.post(
        "/admin/approvals/approve",
        data={"csrf_token": csrf, "booking": str(booking_id)},
        headers=HTML,
    )
    assert again.status_code == 409 and "only pending bookings" in again.text.lower()
    for data in ({}, {"booking": "x", "reason": "r"}, {"booking": "99999999", "reason": "r"}):
        r = client.post("/admin/conflicts/decline", data={"csrf_token": csrf, **data}, headers=HTML)
        assert 400 <= r.status_code < 500, (data, r.status_code)
    assert (
        client.post("/admin/approvals/approve", data={"booking": "1"}, headers=HTML).status_code
        == 403
    )


def test_members_cannot_open_or_use_the_queues(client, make_user, devices):
    make_user("member", username="mia", password="member-pass-1")
    csrf = sign_in(client, "mia", "member-pass-1")
    for path in ("/admin/approvals", "/admin/conflicts"):
        assert client.get(path, headers=HTML).status_code == 403
    r = client.post(
        "/admin/approvals/approve", data={"csrf_token": csrf, "booking": "1"}, headers=HTML
    )
    assert r.status_code == 403


def test_the_queue_costs_the_same_queries_for_more_requests(client, make_user, db, devices, always):
    mia = make_user("member", username="mia")
    _approver(client, make_user)

    def queries() -> int:
        with counting(db) as seen:
            assert client.get("/admin/approvals", headers=HTML).status_code == 200
        return len(seen)

    _request(client, mia, (devices[0], 0, 1))
    small = queries()
    for i in range(1, 4):
        _request(client, mia, (devices[i], i, i + 1), (devices[0], 10 + i, 11 + i))
    assert queries() == small


def test_conflicts_show_the_waitlist_and_declining_a_blocker_promotes_it(
    client, make_user, db, devices
):
    mia, max_ = make_user("member", username="mia"), make_user("member", username="max")
    holder = _request(client, mia, (devices[0], 0, 4))
    queued = _request(client, max_, (devices[0], 1, 3), waitlist=True)
    assert queued["status"] == "CONFLICTING"
    csrf = _approver(client, make_user)
    page = client.get("/admin/conflicts", headers=HTML)
    assert page.status_code == 200
    assert "waitlisted" in page.text and "max" in page.text
    blocker = holder["bookings"][0]["booking_id"]
    assert f"#{blocker} of mia" in page.text
    assert f"Decline #{blocker}" in page.text
    r = client.post(
        "/admin/conflicts/decline",
        data={"csrf_token": csrf, "booking": str(blocker), "reason": "max needs it more"},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    landed = client.get("/admin/conflicts", headers=HTML)
    assert "1 waitlisted booking moved up" in landed.text
    assert "No conflicts" in landed.text
    statuses = _statuses(db)
    assert statuses[blocker] == "REJECTED"
    assert statuses[queued["bookings"][0]["booking_id"]] == "CONFIRMED"


def test_a_waitlisted_booking_can_be_declined_itself(client, make_user, db, devices):
    mia, max_ = make_user("member", username="mia"), make_user("member", username="max")
    _request(client, mia, (devices[1], 0, 4))
    queued = _request(client, max_, (devices[1], 1, 3), waitlist=True)
    csrf = _approver(client, make_user)
    waiting = queued["bookings"][0]["booking_id"]
    no_reason = client.post(
        "/admin/conflicts/decline", data={"csrf_token": csrf, "booking": str(waiting)}, headers=HTML
    )
    assert no_reason.status_code == 422 and "Say why" in no_reason.text
    ok = client.post(
        "/admin/conflicts/decline",
        data={"csrf_token": csrf, "booking": str(waiting), "reason": "no room"},
        headers=HTML,
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert _statuses(db)[waiting] == "REJECTED"
