"""The personal calendar feed: a secret URL (public, revocable) serving RFC 5545 text."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from labkeeper.auth.models import User
from labkeeper.booking.ics import escape, fold, render
from labkeeper.booking.models import Booking
from tests.booking.conftest import API, at, audit_actions, item


def _unfold(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")


def test_format_escapes_and_folds_at_75_octets():
    assert escape("a;b,c\\d\ne") == "a\\;b\\,c\\\\d\\ne"
    line = "DESCRIPTION:" + "é" * 60  # two octets each: must fold between characters
    folded = fold(line)
    pieces = folded.split("\r\n")
    assert len(pieces) > 1
    assert all(len(p.encode()) <= 75 for p in pieces)
    assert all(p.startswith(" ") for p in pieces[1:])
    assert "".join([pieces[0], *(p[1:] for p in pieces[1:])]) == line
    assert fold("SUMMARY:short") == "SUMMARY:short"

    row = Booking(
        id=7,
        grouped_booking_id="g1",
        device_id=1,
        user_id=1,
        status="PENDING",
        start_time=datetime(2026, 5, 1, 9, tzinfo=UTC),
        end_time=datetime(2026, 5, 1, 11, tzinfo=UTC),
        comment="laser; careful, please",
        updated_at=datetime(2026, 4, 1, tzinfo=UTC),
    )
    text = render(
        [(row, "r1", "alice")],
        collaborators={"g1": ["bob"]},
        calendar_name="lab",
        now=datetime(2026, 4, 2, tzinfo=UTC),
    )
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = _unfold(text)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR"
    assert "DTSTART:20260501T090000Z" in lines and "DTEND:20260501T110000Z" in lines
    assert "STATUS:TENTATIVE" in lines and "UID:g1-7@labkeeper" in lines
    (description,) = [x for x in lines if x.startswith("DESCRIPTION:")]
    assert "Comment: laser\\; careful\\, please" in description
    assert "Collaborators: bob" in description


def test_feed_url_is_secret_public_rotatable_and_revocable(client, db, lab, make_user, book):
    alice, bob = make_user("member"), make_user("member")
    r0, r1, r2 = lab.devices[:3]
    mine = book(alice, item(r0, 0, 2), item(r1, 0, 2), comment="ring test")
    shared = book(bob, item(r2, 3, 4), collaborators=[alice.username])
    book(bob, item(r2, 5, 6))  # not alice's business

    assert client.get(f"{API}/calendar/feed", headers=alice.headers).json() == {"active": False}
    made = client.post(f"{API}/calendar/feed", headers=alice.headers)
    assert made.status_code == 201, made.text
    url, token = made.json()["url"], made.json()["token"]
    assert url.endswith(f"/api/v1/calendar/{token}.ics")
    with db.scope(write=False) as s:
        stored = s.scalar(select(User.calendar_token_hash).where(User.id == alice.id))
    assert stored and token not in stored  # only a digest is kept

    feed = client.get(f"{API}/calendar/{token}.ics")  # no credentials: the URL is the key
    assert feed.status_code == 200, feed.text
    assert feed.headers["content-type"].startswith("text/calendar")
    lines = _unfold(feed.text)
    events = [x for x in lines if x == "BEGIN:VEVENT"]
    assert len(events) == 2  # one per booking (a group's time range), owned or shared
    assert "SUMMARY:Booked: r0\\, r1" in lines
    assert f"DTSTART:{at(0):%Y%m%dT%H%M%SZ}" in lines
    assert any(x.startswith(f"UID:{shared['grouped_booking_id']}-") for x in lines)
    assert any(x.startswith(f"UID:{mine['grouped_booking_id']}-") for x in lines)
    unfolded = "\n".join(lines)
    assert "Booked: r2" in unfolded and "Comment: ring test" in unfolded

    rotated = client.post(f"{API}/calendar/feed", headers=alice.headers).json()["token"]
    assert client.get(f"{API}/calendar/{token}.ics").status_code == 404
    assert client.get(f"{API}/calendar/{rotated}.ics").status_code == 200
    assert client.delete(f"{API}/calendar/feed", headers=alice.headers).status_code == 204
    assert client.get(f"{API}/calendar/{rotated}.ics").status_code == 404
    assert client.get(f"{API}/calendar/lkc_guessing-is-futile.ics").status_code == 404
    actions = [a.action for a in audit_actions(db, "calendar.")]
    assert actions == ["calendar.rotate", "calendar.rotate", "calendar.revoke"]
