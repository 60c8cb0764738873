"""The dashboard's cards: real data where its domain's API exists, a helpful empty state otherwise.

Every card costs a fixed number of queries (a count and one short page), whatever the lab's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from labkeeper.admin import repository as admin_repository
from labkeeper.auth import repository as auth_repository
from labkeeper.auth.deps import Principal
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.web.render import format_dt, relative
from labkeeper.web.sections import Section

SHORT = PageParams(limit=5, offset=0)


@dataclass
class Item:
    """One line of a card."""

    label: str
    detail: str = ""
    badge: str = ""
    badge_kind: str = "neutral"
    href: str | None = None


@dataclass
class Card:
    """A dashboard card: a headline number, a few lines, and what to do next."""

    key: str
    title: str
    total: int | None = None
    total_label: str = ""
    items: list[Item] = field(default_factory=list)
    empty: str = ""
    action: tuple[str, str] | None = None  # (label, href)
    unavailable: bool = False  # the part of labkeeper behind it is not there yet


def _action(section: Section, label: str, href: str, api_label: str) -> tuple[str, str]:
    """The card's link: to its page where there is one, else to the API documentation."""
    return (api_label, section.href) if section.api else (label, href)


def _my_bookings(session: Session, principal: Principal, section: Section | None, tz: str) -> Card:
    card = Card("bookings", "Your next bookings")
    if section is None:
        card.unavailable = True
        card.empty = (
            "Booking from the web is on its way. Until it arrives, an administrator can tell "
            "you how your lab books devices today."
        )
        return card
    from labkeeper.booking import service as bookings

    groups, total = bookings.my_groups(session, actor=principal, scope="upcoming", page=SHORT)
    card.total, card.total_label = total, "upcoming"
    for group in groups:
        names = [b["device_name"] for b in group["bookings"]]
        label = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        card.items.append(
            Item(
                label=label,
                detail=f"{format_dt(group['start'], tz)} → {format_dt(group['end'], tz)}",
                badge=str(group["status"]).lower(),
                badge_kind={"ACTIVE": "success", "PENDING": "warning", "CONFLICTING": "danger"}.get(
                    group["status"], "info"
                ),
                href=None if section.api else f"/bookings/{group['grouped_booking_id']}",
            )
        )
    card.empty = "You have nothing booked. Find a free device and book it for your experiment."
    card.action = _action(section, "All your bookings", "/bookings", "Bookings API")
    return card


def _free_devices(session: Session, section: Section | None, now: datetime) -> Card:
    card = Card("devices", "Devices free now")
    if section is None:
        card.unavailable = True
        card.empty = "The device inventory is not available on this server yet."
        return card
    from labkeeper.inventory import repository as inventory

    rows, total = fetch_page(
        session,
        inventory.devices_query(status="available", schedulable=True, free_now=True, now=now),
        PageParams(limit=8, offset=0),
    )
    all_total = fetch_page(session, inventory.devices_query(), PageParams(limit=1))[1]
    card.total, card.total_label = total, f"of {all_total} devices"
    card.items = [
        Item(
            label=device.name,
            detail=device.device_type.name if device.device_type else "",
            badge=device.reachability if device.reachability != "unknown" else "",
            badge_kind="success" if device.reachability == "up" else "danger",
            href=None if section.api else f"/devices/{device.id}",
        )
        for device in rows
    ]
    card.empty = (
        "No device is free right now."
        if all_total
        else "No devices yet. An administrator adds them (or runs `labkeeper demo` for a demo lab)."
    )
    card.action = _action(section, "All devices", "/devices?now=free", "Devices API")
    return card


def _approvals(session: Session, principal: Principal, section: Section | None, tz: str) -> Card:
    card = Card("approvals", "Waiting for your approval")
    if section is None:
        card.unavailable = True
        card.empty = "Booking requests will wait here for approvers once booking is switched on."
        return card
    from labkeeper.booking import service as bookings

    requests, total = bookings.pending_groups(session, actor=principal, page=SHORT)
    card.total, card.total_label = total, "requests"
    card.items = [
        Item(
            label=f"{r['username']}: {r['devices']} device{'s' if r['devices'] != 1 else ''}, "
            f"{r['hours']:g} h",
            detail=f"from {format_dt(r['start'], tz)} · asked {relative(r['created_at'])}",
            badge="" if r["within_my_limits"] else "over your limits",
            badge_kind="warning",
        )
        for r in requests
    ]
    card.empty = "No booking is waiting for approval. Nice and quiet."
    card.action = (
        ("Approvals API", section.href.split("#")[0] + "#/approvals")
        if section.api
        else ("Open the approvals queue", "/admin/approvals")
    )
    return card


def _failed_jobs(session: Session, section: Section | None, now: datetime, tz: str) -> Card:
    card = Card("jobs", "Failed jobs this week")
    if section is None:
        card.unavailable = True
        card.empty = "Background jobs (backups, health checks) will report failures here."
        return card
    from labkeeper.jobs import repository as jobs

    rows, total = fetch_page(
        session, jobs.runs_query(status="failed", since=now - timedelta(days=7)), SHORT
    )
    card.total, card.total_label = total, "failed"
    card.items = [
        Item(
            label=run.job_type,
            detail=f"{format_dt(run.finished_at or run.queued_at, tz)} · {run.message or ''}"[:120],
            badge="failed",
            badge_kind="danger",
        )
        for run in rows
    ]
    card.empty = "Every backup and background job of the last 7 days succeeded."
    card.action = _action(section, "All failed runs", "/jobs?status=failed", "Jobs API")
    return card


def _people(session: Session, principal: Principal) -> Card:
    card = Card("people", "People")
    total = fetch_page(session, auth_repository.users_query(is_active=True), PageParams(limit=1))[1]
    card.total, card.total_label = total, "active accounts"
    if principal.can("users:write"):
        rows, _ = fetch_page(session, auth_repository.invitations_query(pending_only=True), SHORT)
        card.items = [
            Item(label=row.email, detail=f"invited as {row.role}", badge="invited") for row in rows
        ]
        card.empty = "No invitation is pending. Invite a colleague to give them an account."
        card.action = ("Invite someone", "/admin/invitations")
    else:
        card.action = ("See everyone", "/admin/users")
    return card


def _activity(session: Session, tz: str) -> Card:
    card = Card("activity", "Recent activity")
    rows, _ = fetch_page(session, admin_repository.audit_query(), PageParams(limit=6))
    card.items = [
        Item(
            label=row.action,
            detail=f"{row.actor_username or 'system'} · {relative(row.created_at)}",
            badge="" if row.outcome == "success" else row.outcome,
            badge_kind="danger",
        )
        for row in rows
    ]
    card.empty = "Nothing has happened yet. Changes made by anyone will show up here."
    card.action = ("Open the audit log", "/admin/audit")
    return card


def cards(
    session: Session,
    principal: Principal,
    sections: dict[str, Section],
    *,
    now: datetime,
    tz: str,
) -> list[Card]:
    """The cards a principal sees, in reading order."""
    out = [_my_bookings(session, principal, sections.get("bookings"), tz)]
    if principal.can("devices:read"):
        out.append(_free_devices(session, sections.get("devices"), now))
    if principal.can("bookings:approve"):
        out.append(_approvals(session, principal, sections.get("bookings"), tz))
    if principal.can("backups:write") and principal.can("jobs:read"):
        # Operators: the people who keep backups and background work running.
        out.append(_failed_jobs(session, sections.get("jobs"), now, tz))
    if principal.can("users:read"):
        out.append(_people(session, principal))
    if principal.can("logs:read"):
        out.append(_activity(session, tz))
    return out
