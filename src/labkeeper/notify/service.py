"""Who hears about what: booking events become deliveries (Discord webhooks, email), each a
background job queued in the caller's transaction and dispatched only once it commits.

A delivery job carries channel, text and user ids, never a webhook URL or an address: those
are read when the job runs, so secrets stay out of job parameters and a changed setting
applies to messages still waiting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from labkeeper.admin import service as settings
from labkeeper.booking import repository as bookings
from labkeeper.core import audit
from labkeeper.core.audit import Actor
from labkeeper.core.errors import Invalid
from labkeeper.jobs import service as jobs
from labkeeper.notify import tasks  # noqa: F401  (registers the delivery task)

DELIVER = "notify.deliver"
BOOKING_CHANNEL = "discord_booking"
ADMIN_CHANNEL = "discord_admin"
EMAIL = "email"
CHANNELS = (BOOKING_CHANNEL, ADMIN_CHANNEL, EMAIL)

TITLES = {
    "requested": "Booking requested",
    "approved": "Booking approved",
    "declined": "Booking declined",
    "cancelled": "Booking cancelled",
    "started": "Booking started",
    "end_notice": "Booking ends soon",
    "promoted": "Waitlisted booking promoted",
    "expired": "Booking expired",
    "maintenance": "Maintenance clashes with a booking",
    "test": "Test notification",
}


@dataclass(frozen=True)
class Configured:
    """Which channels have what they need to deliver."""

    booking: bool
    admin: bool
    email: bool

    @property
    def any(self) -> bool:
        """Whether anything is configured at all."""
        return self.booking or self.admin or self.email


def configured(session: Session) -> Configured:
    """The channels that are set up in settings."""
    return Configured(
        booking=bool(settings.get(session, "notifications.discord_booking_webhook")),
        admin=bool(settings.get(session, "notifications.discord_admin_webhook")),
        email=bool(
            settings.get(session, "notifications.smtp_host")
            and settings.get(session, "notifications.smtp_from")
        ),
    )


def enqueue(
    session: Session,
    *,
    channel: str,
    event: str,
    text: str,
    subject: str | None = None,
    user_ids: Sequence[int] = (),
    mention: bool = True,
    actor: Actor | None = None,
) -> int:
    """Queue one delivery; it is dispatched once the caller's transaction commits."""
    if channel not in CHANNELS:
        raise Invalid(f"unknown channel {channel!r}", field="channel")
    run = jobs.enqueue(
        session,
        DELIVER,
        params={
            "channel": channel,
            "event": event,
            "text": text,
            "subject": subject,
            "user_ids": list(dict.fromkeys(user_ids)),
            "mention": mention,
        },
        actor=actor,
    )
    return run.id


def _when(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    a, b = start.astimezone(zone), end.astimezone(zone)
    if a.date() == b.date():
        return f"{a:%a %d %b %Y %H:%M}-{b:%H:%M} ({zone.key})"
    return f"{a:%a %d %b %Y %H:%M} - {b:%a %d %b %Y %H:%M} ({zone.key})"


def _sentence(event: str, group: dict[str, Any], **extra: Any) -> str:
    who, what, when = group["owner"], group["devices"], group["when"]
    by = extra.get("by")
    reason = extra.get("reason")
    tail = f" Reason: {reason}" if reason else ""
    if event == "requested":
        status = group["status"]
        waiting = " It waits for an approver." if status == "PENDING" else ""
        listed = " Some devices are on the waitlist." if status == "CONFLICTING" else ""
        return f"{who} booked {what} for {when}: {status}.{waiting}{listed}"
    if event == "approved":
        return f"{by or 'An approver'} approved {who}'s booking of {what} for {when}."
    if event == "declined":
        return f"{by or 'An approver'} declined {who}'s booking of {what} for {when}.{tail}"
    if event == "cancelled":
        return f"{by or 'Someone'} cancelled {who}'s booking of {what} for {when}.{tail}"
    if event == "started":
        return f"{who}'s booking of {what} has started ({when})."
    if event == "end_notice":
        minutes = extra.get("minutes")
        return f"{who}'s booking of {what} ends in {minutes} minutes ({when})."
    if event == "promoted":
        return f"{who}'s waitlisted booking of {what} for {when} is now {group['status']}."
    if event == "expired":
        return f"{who}'s booking request for {what} ({when}) expired before it was confirmed."
    if event == "maintenance":
        window = extra["window"]
        return (
            f"Maintenance of {window} clashes with {who}'s booking of {what} for {when}.{tail} "
            "An admin will sort it out; you may also rebook."
        )
    return f"{who}'s booking of {what} for {when}: {event}."


def _groups(session: Session, gids: Sequence[str], zone: ZoneInfo) -> dict[str, dict[str, Any]]:
    from labkeeper.booking.service import group_status

    rows = bookings.rows_with_names(session, gids)
    people = bookings.people_of_groups(session, gids)
    members: dict[str, list[Any]] = defaultdict(list)
    for booking, device_name, username in rows:
        members[booking.grouped_booking_id].append((booking, device_name, username))
    out = {}
    for gid, items in members.items():
        start = min(b.start_time for b, _, _ in items)
        end = max(b.end_time for b, _, _ in items)
        out[gid] = {
            "owner": items[0][2],
            "owner_id": items[0][0].user_id,
            "devices": ", ".join(sorted({name for _, name, _ in items})),
            "when": _when(start, end, zone),
            "status": group_status(b.status for b, _, _ in items),
            "people": people.get(gid, [items[0][0].user_id]),
        }
    return out


def booking_event(
    session: Session,
    event: str,
    gids: Sequence[str],
    *,
    actor: Actor | None = None,
    reason: str | None = None,
    minutes: int | None = None,
    window: dict[str, Any] | None = None,
) -> list[int]:
    """Tell the people of some booking groups (and, where it matters, the admins) what
    happened; returns the queued delivery jobs (none when nothing is configured)."""
    where = configured(session)
    if not where.any or not gids:
        return []
    zone = ZoneInfo(str(settings.get(session, "general.lab_timezone")))
    lab = str(settings.get(session, "general.lab_name"))
    by = actor.username if actor is not None and actor.user_id is not None else None
    window_text = None
    if window is not None:
        names = bookings.device_names(session, window["device_ids"])
        window_text = (
            ", ".join(sorted(names.values())) + " " + _when(window["start"], window["end"], zone)
        )
    jobs_queued: list[int] = []
    for gid, group in _groups(session, gids, zone).items():
        text = _sentence(event, group, by=by, reason=reason, minutes=minutes, window=window_text)
        people = group["people"]
        # The person who did it needs no ping about it; everyone else in the group does.
        mentioned = [p for p in people if actor is None or p != actor.user_id]
        if where.booking:
            jobs_queued.append(
                enqueue(
                    session,
                    channel=BOOKING_CHANNEL,
                    event=event,
                    text=text,
                    user_ids=mentioned,
                    actor=actor,
                )
            )
        needs_admin = event == "maintenance" or (
            event == "requested" and group["status"] == "PENDING"
        )
        if where.admin and needs_admin:
            jobs_queued.append(
                enqueue(
                    session,
                    channel=ADMIN_CHANNEL,
                    event=event,
                    text=f"{text} (group {gid})",
                    mention=False,
                    actor=actor,
                )
            )
        if where.email and people:
            subject = f"[{lab}] {TITLES.get(event, event)}: {group['devices']}"
            body = f"{text}\n\nBooking group: {gid}\n"
            jobs_queued.append(
                enqueue(
                    session,
                    channel=EMAIL,
                    event=event,
                    text=body,
                    subject=subject,
                    user_ids=people,
                    actor=actor,
                )
            )
    return jobs_queued


def send_test(session: Session, *, channel: str, actor: Actor) -> int:
    """Queue a test message on one channel (to the admin asking, for email); audited."""
    lab = str(settings.get(session, "general.lab_name"))
    text = f"Test notification from {lab}, sent by {actor.username}."
    run_id = enqueue(
        session,
        channel=channel,
        event="test",
        text=text,
        subject=f"[{lab}] {TITLES['test']}",
        user_ids=[actor.user_id] if actor.user_id is not None else [],
        mention=channel == BOOKING_CHANNEL,
        actor=actor,
    )
    audit.record(
        session,
        actor,
        "notifications.test",
        "job_log",
        run_id,
        payload={"channel": channel},
    )
    return run_id
