"""Maintenance windows: they block bookings; one made over existing bookings marks them
(`bookings.maintenance_conflict_id`) and tells their owners. Quick presets (all day, morning,
afternoon, evening) are days in the lab's time zone (`general.lab_timezone`)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.orm import Session

from labkeeper.admin import service as settings
from labkeeper.booking import repository
from labkeeper.booking.models import Booking
from labkeeper.booking.repository import HOLDING
from labkeeper.booking.schemas import MaintenanceCreate
from labkeeper.booking.service import booking_view, locked, notify_groups, promote_waitlist
from labkeeper.core import audit
from labkeeper.core.audit import Actor
from labkeeper.core.errors import Invalid, InvalidTransition, not_found
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.time import as_utc, utcnow
from labkeeper.inventory.models import MaintenanceWindow

# Local start and end of each preset; an end of None is the next midnight.
PRESETS: dict[str, tuple[dt.time, dt.time | None]] = {
    "all_day": (dt.time(0), None),
    "morning": (dt.time(6), dt.time(12)),
    "afternoon": (dt.time(12), dt.time(18)),
    "evening": (dt.time(18), None),
}
LONGEST = dt.timedelta(days=366)


def lab_zone(session: Session) -> ZoneInfo:
    """The lab's time zone."""
    return ZoneInfo(str(settings.get(session, "general.lab_timezone")))


def preset_window(session: Session, preset: str, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """A preset of a day in the lab's time zone, as UTC start and end (DST-aware)."""
    zone = lab_zone(session)
    begin, finish = PRESETS[preset]
    start = dt.datetime.combine(day, begin, tzinfo=zone)
    if finish is None:
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    else:
        end = dt.datetime.combine(day, finish, tzinfo=zone)
    return as_utc(start), as_utc(end)


def presets(session: Session, *, day: dt.date) -> dict[str, Any]:
    """Every preset of a day, in UTC, with the lab's time zone."""
    out = []
    for name in PRESETS:
        start, end = preset_window(session, name, day)
        out.append({"preset": name, "start": start, "end": end})
    return {"date": day, "timezone": lab_zone(session).key, "presets": out}


def window_view(row: MaintenanceWindow, device_name: str) -> dict[str, Any]:
    """A maintenance window as the API shows it."""
    return {
        "id": row.id,
        "device_id": row.device_id,
        "device_name": device_name,
        "start": row.start_time,
        "end": row.end_time,
        "reason": row.reason,
        "created_by": row.created_by,
        "cancelled_at": row.cancelled_at,
        "created_at": row.created_at,
    }


def list_windows(
    session: Session, *, filters: dict[str, Any], page: PageParams
) -> tuple[list[dict[str, Any]], int]:
    """Maintenance windows, filtered, by start (two queries whatever the page size)."""
    rows, total = fetch_page(session, repository.maintenance_query(**filters), page, scalars=False)
    return [window_view(w, name) for w, name in rows], total


def collisions(session: Session, window_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Per window: the bookings still holding its devices that it was created over (one query)."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row, device_name, username in repository.rows_marked_by_windows(session, window_ids):
        assert row.maintenance_conflict_id is not None
        out[row.maintenance_conflict_id].append(booking_view(row, device_name, username))
    return out


def create(session: Session, *, data: MaintenanceCreate, actor: Actor) -> dict[str, Any]:
    """Put devices in maintenance for a time; bookings in the way are marked, owners told."""
    if data.preset is not None and data.date is not None:
        start, end = preset_window(session, data.preset, data.date)
    else:
        assert data.start is not None and data.end is not None  # the schema saw to it
        start, end = as_utc(data.start), as_utc(data.end)
    if end <= start:
        raise Invalid("the end must be after the start", field="end", code="invalid_time_range")
    if end <= utcnow():
        raise Invalid("the window is over already", field="end", code="end_in_past")
    if end - start > LONGEST:
        raise Invalid(
            f"a maintenance window may span at most {LONGEST.days} days",
            field="end",
            code="window_too_long",
        )
    device_ids = sorted(set(data.device_ids))
    names = repository.device_names(session, device_ids)
    missing = [d for d in device_ids if d not in names]
    if missing:
        raise Invalid(
            "no device with id " + ", ".join(map(str, missing)),
            field="device_ids",
            code="unknown_device",
            details={"device_ids": missing},
        )

    def work() -> tuple[list[MaintenanceWindow], list[Any]]:
        # The same device locks as bookings take: a booking cannot slip in between the
        # window's insert and the marking of what it clashes with.
        repository.lock_devices(session, device_ids)
        windows = [
            MaintenanceWindow(
                device_id=d,
                start_time=start,
                end_time=end,
                reason=data.reason,
                created_by=actor.user_id,
            )
            for d in device_ids
        ]
        session.add_all(windows)
        session.flush()
        by_device = {w.device_id: w.id for w in windows}
        clashing = repository.booking_overlaps(
            session, [(d, start, end) for d in device_ids], statuses=HOLDING
        )
        marks: dict[int, list[int]] = defaultdict(list)
        for b in clashing:
            marks[by_device[b.device_id]].append(b.id)
        for window_id, ids in marks.items():
            session.execute(
                update(Booking)
                .where(Booking.id.in_(ids))
                .values(maintenance_conflict_id=window_id),
                execution_options={"synchronize_session": False},
            )
        session.expire_all()
        return windows, clashing

    windows, clashing = locked(session, work)
    affected = sorted(b.id for b in clashing)
    audit.record(
        session,
        actor,
        "maintenance.create",
        "maintenance_window",
        windows[0].id if len(windows) == 1 else None,
        payload={
            "window_ids": [w.id for w in windows],
            "device_ids": device_ids,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "reason": data.reason,
            "preset": data.preset,
            "affected_booking_ids": affected,
        },
    )
    groups = sorted({b.grouped_booking_id for b in clashing})
    if groups:
        notify_groups(
            session,
            "maintenance",
            groups,
            actor=actor,
            reason=data.reason,
            window={"start": start, "end": end, "device_ids": device_ids},
        )
    return {
        "windows": [window_view(w, names[w.device_id]) for w in windows],
        "affected_booking_ids": affected,
    }


def cancel(session: Session, *, window_id: int, actor: Actor) -> dict[str, Any]:
    """Cancel a window: it stops blocking, its marks are cleared, the waitlist moves up."""
    window = session.get(MaintenanceWindow, window_id)
    if window is None:
        raise not_found("maintenance window", window_id)
    if window.cancelled_at is not None:
        raise InvalidTransition("this maintenance window is cancelled already")
    device_id = window.device_id

    def work() -> tuple[list[int], list[int]]:
        now = utcnow()
        repository.lock_devices(session, [device_id])
        changed = session.execute(
            update(MaintenanceWindow)
            .where(MaintenanceWindow.id == window_id, MaintenanceWindow.cancelled_at.is_(None))
            .values(cancelled_at=now),
            execution_options={"synchronize_session": False},
        )
        if not getattr(changed, "rowcount", 0):
            raise InvalidTransition("this maintenance window is cancelled already")
        cleared = [b.id for b in repository.rows_marked_by(session, window_id)]
        if cleared:
            session.execute(
                update(Booking).where(Booking.id.in_(cleared)).values(maintenance_conflict_id=None),
                execution_options={"synchronize_session": False},
            )
        session.expire_all()
        promoted = promote_waitlist(session, [device_id], now=now)
        return cleared, [p.id for p in promoted]

    cleared, promoted = locked(session, work)
    audit.record(
        session,
        actor,
        "maintenance.cancel",
        "maintenance_window",
        window_id,
        payload={"device_id": device_id, "cleared_marks": cleared, "promoted": promoted},
    )
    if promoted:
        notify_groups(
            session,
            "promoted",
            {r.grouped_booking_id for r in repository.rows_by_ids(session, promoted)},
        )
    names = repository.device_names(session, [device_id])
    refreshed = session.get(MaintenanceWindow, window_id)
    assert refreshed is not None
    return window_view(refreshed, names.get(device_id, ""))
