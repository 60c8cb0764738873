"""A personal calendar feed (RFC 5545) at a secret URL: create/rotate, revoke, render.

The secret is shown once and stored as its SHA-256 digest in `users.calendar_token_hash`;
rotating replaces it (old URLs stop working), revoking removes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from labkeeper.admin import service as settings
from labkeeper.auth.models import User
from labkeeper.booking import repository
from labkeeper.booking.models import BookingStatus
from labkeeper.core import audit
from labkeeper.core.audit import Actor
from labkeeper.core.errors import NotFound, not_found
from labkeeper.core.security import new_token, token_hash
from labkeeper.core.time import utcnow

FEED_PREFIX = "lkc"
# How far back the feed reaches (the future is always included).
HISTORY = timedelta(days=90)
TENTATIVE = {BookingStatus.PENDING.value, BookingStatus.CONFLICTING.value}
LINE_OCTETS = 75


# -- the format ----------------------------------------------------------------------------


def escape(text: str) -> str:
    """Escape a TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma, newlines."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: str) -> str:
    """Fold a content line into CRLF-joined pieces of at most 75 octets (RFC 5545 3.1),
    never splitting a UTF-8 character."""
    raw = line.encode()
    if len(raw) <= LINE_OCTETS:
        return line
    pieces: list[str] = []
    limit = LINE_OCTETS
    start = 0
    while start < len(raw):
        end = min(start + limit, len(raw))
        # Step back off a continuation byte so a character is never cut in two.
        while end < len(raw) and (raw[end] & 0xC0) == 0x80:
            end -= 1
        pieces.append(raw[start:end].decode())
        start = end
        limit = LINE_OCTETS - 1  # continuation lines begin with one space
    return "\r\n ".join(pieces)


def stamp(value: datetime) -> str:
    """A UTC DATE-TIME value: 20260501T090000Z."""
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def render(
    rows: Sequence[tuple[Any, str, str]],
    *,
    collaborators: dict[str, list[str]],
    calendar_name: str,
    now: datetime,
    host: str = "labkeeper",
) -> str:
    """A VCALENDAR with one VEVENT per booking (a group's rows sharing one time range)."""
    events: dict[tuple[str, datetime, datetime], list[tuple[Any, str, str]]] = defaultdict(list)
    for booking, device_name, username in rows:
        events[(booking.grouped_booking_id, booking.start_time, booking.end_time)].append(
            (booking, device_name, username)
        )
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//labkeeper//bookings//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape(calendar_name)}",
    ]
    for (gid, start, end), members in sorted(events.items(), key=lambda e: (e[0][1], e[0][0])):
        first = min(members, key=lambda m: m[0].id)[0]
        devices = sorted(name for _, name, _ in members)
        statuses = {b.status for b, _, _ in members}
        description = [
            "Devices: " + ", ".join(devices),
            "Status: " + ", ".join(sorted(statuses)),
            "Owner: " + members[0][2],
        ]
        if collaborators.get(gid):
            description.append("Collaborators: " + ", ".join(collaborators[gid]))
        if first.comment:
            description.append("Comment: " + first.comment)
        description.append("Booking group: " + gid)
        lines += [
            "BEGIN:VEVENT",
            f"UID:{gid}-{first.id}@{host}",
            f"DTSTAMP:{stamp(now)}",
            f"DTSTART:{stamp(start)}",
            f"DTEND:{stamp(end)}",
            f"LAST-MODIFIED:{stamp(max(b.updated_at for b, _, _ in members))}",
            f"SUMMARY:{escape('Booked: ' + ', '.join(devices))}",
            f"DESCRIPTION:{escape(chr(10).join(description))}",
            "STATUS:" + ("TENTATIVE" if statuses <= TENTATIVE else "CONFIRMED"),
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "\r\n".join(fold(line) for line in lines) + "\r\n"


# -- the feed ------------------------------------------------------------------------------


def _user(session: Session, actor: Actor) -> User:
    user = session.get(User, actor.user_id) if actor.user_id is not None else None
    if user is None:
        raise not_found("user", actor.user_id)
    return user


def feed_active(session: Session, *, actor: Actor) -> bool:
    """Whether the user has a calendar feed."""
    return _user(session, actor).calendar_token_hash is not None


def rotate(session: Session, *, actor: Actor) -> str:
    """Create the user's feed secret, or replace it (the old URL stops working)."""
    user = _user(session, actor)
    token = new_token(FEED_PREFIX)
    replaced = user.calendar_token_hash is not None
    user.calendar_token_hash = token_hash(token)
    session.flush()
    audit.record(session, actor, "calendar.rotate", "user", user.id, payload={"replaced": replaced})
    return token


def revoke(session: Session, *, actor: Actor) -> None:
    """Remove the user's feed secret: the URL stops working."""
    user = _user(session, actor)
    user.calendar_token_hash = None
    session.flush()
    audit.record(session, actor, "calendar.revoke", "user", user.id)


def feed(session: Session, *, secret: str, host: str = "labkeeper") -> str:
    """The ICS text of the feed behind a secret; 404 for an unknown or revoked secret."""
    user = None
    if secret.startswith(FEED_PREFIX + "_"):
        user = repository.user_by_calendar_hash(session, token_hash(secret))
    if user is None:
        raise NotFound("no calendar feed at this address", details={"entity": "calendar"})
    now = utcnow()
    rows = [tuple(r) for r in repository.calendar_rows(session, user.id, since=now - HISTORY)]
    gids: Iterable[str] = {b.grouped_booking_id for b, _, _ in rows}
    lab = str(settings.get(session, "general.lab_name"))
    return render(
        rows,
        collaborators=repository.collaborator_names(session, gids),
        calendar_name=f"{lab}: {user.username}'s bookings",
        now=now,
        host=host,
    )
