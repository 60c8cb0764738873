"""Booking rules: groups, conflicts and the waitlist, approvals, lifecycle, favorites, views.

No double booking, on every backend, under any concurrency: every change that can make a row
hold a device (create, extend, promote from the waitlist, a maintenance window) runs `locked`:
it locks the rows of the devices concerned in id order, checks for overlaps, then writes, in
the request's one transaction. Changes that release a device (cancel, decline, expiry) take the
same device locks first, so every transaction takes device locks before booking row locks and
waits instead of deadlocking. See `locked` for how deadlocks that happen anyway are retried.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from labkeeper.admin import service as settings
from labkeeper.auth import repository as auth_repository
from labkeeper.auth.deps import Principal
from labkeeper.auth.models import User
from labkeeper.booking import repository
from labkeeper.booking.models import Booking, BookingCollaborator, BookingFavorite, BookingStatus
from labkeeper.booking.repository import HOLDING, LIVE, NOT_BOOKABLE, Item
from labkeeper.booking.schemas import (
    BookingCreate,
    BookingItem,
    Decision,
    Decline,
    FavoriteBook,
    FavoriteCreate,
    GroupUpdate,
    RebookBody,
)
from labkeeper.core import audit
from labkeeper.core.audit import SYSTEM, Actor
from labkeeper.core.db import has_written, is_deadlock
from labkeeper.core.errors import (
    AlreadyExists,
    Conflict,
    Invalid,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    not_found,
)
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.time import as_utc, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

S = BookingStatus
# A start this far in the past still counts as "now": clients' clocks drift a little.
START_GRACE = timedelta(minutes=2)
# Windows asked of availability and the timeline are bounded so no request scans for ever.
MAX_WINDOW = timedelta(days=62)
DEADLOCK_ATTEMPTS = 5
EXCLUSION_CONSTRAINT = "ex_bookings_no_overlap"


# -- locking, retrying ---------------------------------------------------------------------


def locked(session: Session, work: Callable[[], T], *, attempts: int = DEADLOCK_ATTEMPTS) -> T:
    """Run `work` (lock devices, check, write) and run it again when the database deadlocks.

    A deadlock (or serialization failure) loses the victim's work, so `work` must be
    repeatable: it reads what it needs and takes its locks itself. How it is repeated depends
    on what the transaction did before:
    - Nothing written yet (every booking request: authentication only reads): the whole
      transaction is rolled back and begun again, then `work` runs again. This is the only
      thing that works on MariaDB, where InnoDB rolls back the entire transaction of a
      deadlock victim, savepoints included; and it costs no extra round trips.
    - Already written (a caller composing bookings with its own changes): on PostgreSQL `work`
      runs in a savepoint, and a deadlock rolls back only the savepoint (releasing the locks
      `work` took) before the retry; the caller's changes stay. On MariaDB those changes are
      gone with the transaction, so the error is raised rather than silently committing half.
    - SQLite writers hold the database lock from BEGIN IMMEDIATE on and cannot deadlock.
    Background work queued by a failed attempt (`after_commit` hooks) is dropped before the
    next, so it is queued exactly once. Domain errors raised by `work` are never retried.
    After any database error the session is usable again (rolled back as above).
    """
    backend = session.get_bind().dialect.name
    wrote = has_written(session)
    savepoint = wrote and backend == "postgresql"
    hooks: list[Any] = session.info.setdefault("after_commit", [])
    mark = len(hooks)
    for attempt in range(1, attempts + 1):
        try:
            if savepoint:
                with session.begin_nested():
                    return work()
            return work()
        except DBAPIError as exc:
            del hooks[mark:]
            if not savepoint:
                if wrote:
                    raise
                session.rollback()
            if not is_deadlock(exc) or attempt == attempts:
                raise
            session.expire_all()
            log.info("deadlock on attempt %d, retrying: %s", attempt, str(exc.orig)[:200])
            time.sleep(random.uniform(0.005, 0.02 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def _lock_rows(
    session: Session, ids: Iterable[int], statuses: Sequence[str], *extra: Any
) -> dict[int, Any]:
    """Lock booking rows that are still in one of `statuses` (and match `extra`).

    Returns their current id, status, device and times by id; rows that moved on meanwhile
    are left out, so callers act on what is true now, not on what they read earlier.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    stmt = (
        select(Booking.id, Booking.status, Booking.device_id, Booking.start_time, Booking.end_time)
        .where(Booking.id.in_(wanted), Booking.status.in_(list(statuses)), *extra)
        .order_by(Booking.id)
    )
    if session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return {r.id: r for r in session.execute(stmt)}


def _set(session: Session, ids: Sequence[int], **values: Any) -> None:
    """Update booking rows by id (the caller holds their locks)."""
    if ids:
        session.execute(
            update(Booking).where(Booking.id.in_(list(ids))).values(**values),
            execution_options={"synchronize_session": False},
        )


# -- views ---------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    # The same form pydantic gives response bodies: UTC with a trailing Z.
    return value.isoformat().replace("+00:00", "Z")


def group_status(statuses: Iterable[str]) -> str:
    """One status for a group: the least settled live one, else the most telling final one."""
    found = set(statuses)
    if len(found) == 1:
        return found.pop()
    for candidate in (S.CONFLICTING, S.PENDING, S.CONFIRMED, S.ACTIVE):
        if candidate.value in found:
            return candidate.value
    for candidate in (S.COMPLETED, S.CANCELLED, S.REJECTED, S.EXPIRED):
        if candidate.value in found:
            return candidate.value
    return S.PENDING.value


def booking_view(row: Booking, device_name: str, username: str) -> dict[str, Any]:
    """A booking row as the API shows it."""
    return {
        "booking_id": row.id,
        "grouped_booking_id": row.grouped_booking_id,
        "device_id": row.device_id,
        "device_name": device_name,
        "user_id": row.user_id,
        "username": username,
        "start": row.start_time,
        "end": row.end_time,
        "status": row.status,
        "comment": row.comment,
        "topology_id": row.topology_id,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at,
        "decision_reason": row.decision_reason,
        "maintenance_conflict_id": row.maintenance_conflict_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def groups_view(session: Session, gids: Sequence[str]) -> list[dict[str, Any]]:
    """Groups with rows, owner and collaborators, in the order given (three queries)."""
    rows = repository.rows_with_names(session, gids)
    names = repository.collaborator_names(session, gids)
    by_group: dict[str, list[Any]] = defaultdict(list)
    for booking, device_name, username in rows:
        by_group[booking.grouped_booking_id].append((booking, device_name, username))
    out = []
    for gid in gids:
        members = by_group.get(gid)
        if not members:
            continue
        first = members[0][0]
        out.append(
            {
                "grouped_booking_id": gid,
                "status": group_status(b.status for b, _, _ in members),
                "user_id": first.user_id,
                "username": members[0][2],
                "comment": first.comment,
                "topology_id": first.topology_id,
                "collaborators": names.get(gid, []),
                "start": min(b.start_time for b, _, _ in members),
                "end": max(b.end_time for b, _, _ in members),
                "bookings": [booking_view(b, d, u) for b, d, u in members],
                "created_at": min(b.created_at for b, _, _ in members),
            }
        )
    return out


class NewBooking(NamedTuple):
    """A row a booking request has just written (written past the ORM: no Booking object)."""

    id: int
    device_id: int
    start_time: datetime
    end_time: datetime
    status: str


def created_view(gid: str, rows: Sequence[Booking | NewBooking]) -> dict[str, Any]:
    """The answer to a booking request."""
    return {
        "grouped_booking_id": gid,
        "status": group_status(r.status for r in rows),
        "bookings": [
            {
                "booking_id": r.id,
                "device_id": r.device_id,
                "start": r.start_time,
                "end": r.end_time,
                "status": r.status,
            }
            for r in rows
        ],
    }


# -- rules shared by the operations --------------------------------------------------------


def _conflict_entries(
    session: Session, items: Sequence[Item], *, exclude_ids: Iterable[int] = ()
) -> list[dict[str, Any]]:
    """What each item collides with: holding bookings and maintenance windows."""
    out: list[dict[str, Any]] = []
    found = repository.overlaps(session, items, exclude_ids=exclude_ids)
    for index, (device, start, end) in enumerate(items):
        for o in found:
            if o.device_id != device or o.start_time >= end or o.end_time <= start:
                continue
            entry: dict[str, Any] = {"item": index, "kind": o.kind}
            if o.kind == "booking":
                entry.update(booking_id=o.id, grouped_booking_id=o.grouped_booking_id)
            else:
                entry["maintenance_id"] = o.id
            entry.update(device_id=o.device_id, start=_iso(o.start_time), end=_iso(o.end_time))
            if o.kind == "booking":
                entry.update(status=o.status, username=o.username)
            else:
                entry["reason"] = o.reason
            out.append(entry)
    return out


def conflict_error(conflicts: list[dict[str, Any]]) -> Conflict:
    """The 409 of a request that collides with bookings or maintenance."""
    booked = sum(1 for c in conflicts if c["kind"] == "booking")
    serviced = len(conflicts) - booked
    parts = []
    if booked:
        parts.append(f"{booked} booking{'s' if booked != 1 else ''}")
    if serviced:
        parts.append(f"{serviced} maintenance window{'s' if serviced != 1 else ''}")
    return Conflict(
        "the request collides with " + " and ".join(parts or ["another booking"]),
        code="booking_conflict",
        details={"conflicts": conflicts},
    )


def _check_times(session: Session, items: Sequence[Item], now: datetime) -> None:
    max_hours = int(settings.get(session, "booking.max_duration_hours"))
    max_days = int(settings.get(session, "booking.max_notice_days"))
    min_minutes = int(settings.get(session, "booking.min_notice_minutes"))
    for i, (_, start, end) in enumerate(items):
        field = f"items.{i}"
        if end <= start:
            raise Invalid(
                "the end must be after the start", field=f"{field}.end", code="invalid_time_range"
            )
        if start < now - START_GRACE:
            raise Invalid(
                f"the start {start.isoformat()} is in the past",
                field=f"{field}.start",
                code="start_in_past",
            )
        if end - start > timedelta(hours=max_hours):
            raise Invalid(
                f"a booking may last at most {max_hours} hours",
                field=f"{field}.end",
                code="duration_too_long",
                details={"max_hours": max_hours},
            )
        if start > now + timedelta(days=max_days):
            raise Invalid(
                f"a booking may start at most {max_days} days ahead",
                field=f"{field}.start",
                code="notice_too_long",
                details={"max_notice_days": max_days},
            )
        if min_minutes and start < now + timedelta(minutes=min_minutes) - START_GRACE:
            raise Invalid(
                f"a booking must be made at least {min_minutes} minutes before it starts",
                field=f"{field}.start",
                code="notice_too_short",
                details={"min_notice_minutes": min_minutes},
            )
    ordered = sorted(enumerate(items), key=lambda x: (x[1][0], x[1][1]))
    for (_, prev), (j, cur) in pairwise(ordered):
        if prev[0] == cur[0] and cur[1] < prev[2]:
            raise Invalid(
                f"device {cur[0]} appears twice in the request with overlapping times",
                field=f"items.{j}",
                code="overlapping_items",
            )


def _bookable(device_ids: Iterable[int], info: dict[int, Any]) -> None:
    """Refuse devices that do not exist or cannot be booked."""
    ids = set(device_ids)
    missing = sorted(ids - set(info))
    if missing:
        raise Invalid(
            "no device with id " + ", ".join(map(str, missing)),
            field="items",
            code="unknown_device",
            details={"device_ids": missing},
        )
    blocked = [
        {
            "device_id": d.id,
            "name": d.name,
            "reason": "its type is not schedulable" if not d.is_schedulable else d.status,
        }
        for d in info.values()
        if not d.is_schedulable or d.status in NOT_BOOKABLE
    ]
    if blocked:
        raise Invalid(
            "cannot be booked: " + ", ".join(f"{b['name']} ({b['reason']})" for b in blocked),
            field="items",
            code="device_not_schedulable",
            details={"devices": blocked},
        )


def _collaborators(session: Session, usernames: Sequence[str], owner_id: int) -> list[User]:
    unique = list(dict.fromkeys(u.lower() for u in usernames))
    found = auth_repository.users_by_usernames(session, unique)
    missing = [u for u in unique if u not in found or not found[u].is_active]
    if missing:
        raise Invalid(
            "no such user: " + ", ".join(missing),
            field="collaborators",
            code="unknown_collaborator",
            details={"usernames": missing},
        )
    return [found[u] for u in unique if found[u].id != owner_id]


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600


def _within(limits: dict[str, Any] | None, hours: float, devices: int) -> bool:
    limits = limits or {}
    max_hours, max_devices = limits.get("max_hours"), limits.get("max_devices")
    return not (max_hours and hours > max_hours) and not (max_devices and devices > max_devices)


def _policy_status(
    session: Session, *, hours: float, devices: int, requester: Actor | None = None
) -> str:
    """CONFIRMED or PENDING, as the approval settings say for a request of this size."""
    mode = settings.get(session, "approval.mode")
    if mode == "auto":
        return S.CONFIRMED.value
    if mode == "always":
        return S.PENDING.value
    if (
        isinstance(requester, Principal)
        and requester.can("bookings:approve")
        and _within(requester.approval_limits, hours, devices)
    ):
        return S.CONFIRMED.value  # an approver need not approve their own request
    if hours <= float(settings.get(session, "approval.auto_max_hours")) and devices <= int(
        settings.get(session, "approval.auto_max_devices")
    ):
        return S.CONFIRMED.value
    return S.PENDING.value


def _user_id(actor: Actor) -> int:
    if actor.user_id is None:
        raise PermissionDenied("only a signed-in user can do this", code="not_a_user")
    return actor.user_id


def _may_change(session: Session, actor: Actor, rows: Sequence[Booking]) -> None:
    """Owners, collaborators and admins change a booking; nobody else."""
    if actor is SYSTEM or (isinstance(actor, Principal) and actor.is_admin):
        return
    uid = _user_id(actor)
    foreign = {r.grouped_booking_id for r in rows if r.user_id != uid}
    if foreign and repository.collaborations(session, uid, foreign) != foreign:
        raise PermissionDenied(
            "you may only change bookings you own or collaborate on", code="not_your_booking"
        )


def _may_see(session: Session, actor: Principal, rows: Sequence[Booking]) -> None:
    if actor.can("bookings:read"):
        return
    uid = _user_id(actor)
    foreign = {r.grouped_booking_id for r in rows if r.user_id != uid}
    if foreign and repository.collaborations(session, uid, foreign) != foreign:
        raise PermissionDenied(
            "you may only see bookings you own or collaborate on", code="not_your_booking"
        )


def _group(session: Session, gid: str) -> list[Booking]:
    rows = repository.group_rows(session, gid)
    if not rows:
        raise not_found("booking group", gid)
    return rows


def _row(session: Session, booking_id: int) -> Booking:
    row = session.get(Booking, booking_id)
    if row is None:
        raise not_found("booking", booking_id)
    return row


# `hook(session, grouped_booking_ids)`, called in the transaction that made rows of those groups
# ACTIVE or ended them (started, completed, cancelled while active). The topology domain
# registers one that asks for the optical patches to follow.
active_change_hooks: list[Callable[[Session, set[str]], None]] = []


def _active_changed(session: Session, gids: Iterable[str]) -> None:
    wanted = set(gids)
    if wanted:
        for hook in active_change_hooks:
            hook(session, wanted)


def notify_groups(session: Session, event: str, gids: Iterable[str], **kwargs: Any) -> None:
    from labkeeper.notify import service as notify

    wanted = sorted(set(gids))
    if wanted:
        notify.booking_event(session, event, wanted, **kwargs)


def _refuse_server_fields(data: BookingCreate) -> None:
    if "status" in data.model_fields_set:
        raise Invalid(
            "the server decides a booking's status; leave 'status' out",
            field="status",
            code="status_not_allowed",
        )
    if "user_id" in data.model_fields_set:
        raise Invalid(
            "a booking belongs to whoever makes it; leave 'user_id' out",
            field="user_id",
            code="user_id_not_allowed",
        )


# -- creating ------------------------------------------------------------------------------


def create(
    session: Session,
    *,
    data: BookingCreate,
    actor: Actor,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Book devices and time ranges as one group: all rows or none; 409 on any collision."""
    _refuse_server_fields(data)
    owner = _user_id(actor)
    now = utcnow()
    items: list[Item] = [(i.device_id, as_utc(i.start), as_utc(i.end)) for i in data.items]
    _check_times(session, items, now)
    people = _collaborators(session, data.collaborators, owner)
    if data.topology_id is not None and not repository.topology_exists(session, data.topology_id):
        raise Invalid(
            f"topology {data.topology_id} does not exist",
            field="topology_id",
            code="unknown_topology",
        )
    limit = int(settings.get(session, "booking.max_active_per_user"))
    longest = timedelta(hours=int(settings.get(session, "booking.max_duration_hours")))
    held = repository.holding_count(session, owner, started_after=now - longest)
    if held + len(items) > limit:
        raise Conflict(
            f"you hold {held} bookings; with these {len(items)} you would exceed the limit "
            f"of {limit}",
            code="quota_exceeded",
            details={"limit": limit, "held": held, "requested": len(items)},
        )
    devices = len({d for d, _, _ in items})
    hours = max(_hours(s, e) for _, s, e in items)
    status = _policy_status(session, hours=hours, devices=devices, requester=actor)
    gid = str(uuid.uuid4())

    def work() -> list[NewBooking]:
        _bookable(
            (d for d, _, _ in items), repository.lock_devices(session, (d for d, _, _ in items))
        )
        conflicts = _conflict_entries(session, items)
        if conflicts and not data.waitlist:
            raise conflict_error(conflicts)
        clashing = {c["item"] for c in conflicts}
        statuses = [S.CONFLICTING.value if i in clashing else status for i in range(len(items))]
        ids = repository.insert_bookings(
            session,
            [
                {
                    "grouped_booking_id": gid,
                    "device_id": device,
                    "user_id": owner,
                    "start_time": start,
                    "end_time": end,
                    "status": state,
                    "comment": data.comment,
                    "topology_id": data.topology_id,
                }
                for (device, start, end), state in zip(items, statuses, strict=True)
            ],
        )
        repository.insert_collaborators(
            session,
            [{"grouped_booking_id": gid, "user_id": p.id, "added_by": owner} for p in people],
        )
        return [
            NewBooking(row_id, *item, state)
            for row_id, item, state in zip(ids, items, statuses, strict=True)
        ]

    rows = _guarded(session, work, items)
    audit.record(
        session,
        actor,
        "bookings.create",
        "booking_group",
        gid,
        payload={
            "booking_ids": [r.id for r in rows],
            "items": [
                {"device_id": d, "start": s.isoformat(), "end": e.isoformat()} for d, s, e in items
            ],
            "status": group_status(r.status for r in rows),
            "waitlisted": [r.id for r in rows if r.status == S.CONFLICTING.value],
            "collaborators": [p.username for p in people],
            "comment": data.comment,
            **(source or {}),
        },
    )
    notify_groups(session, "requested", [gid], actor=actor)
    return created_view(gid, rows)


def _guarded(session: Session, work: Callable[[], T], items: Sequence[Item]) -> T:
    """`locked(work)`, answering PostgreSQL's exclusion constraint like our own check."""
    try:
        return locked(session, work)
    except IntegrityError as exc:
        if EXCLUSION_CONSTRAINT not in str(exc.orig):
            raise
        # Only a writer that bypassed the device locks can get here; `locked` rolled back
        # what failed, so the session can still say what the request collided with.
        raise conflict_error(_conflict_entries(session, items)) from None


# -- the waitlist --------------------------------------------------------------------------


def promote_waitlist(
    session: Session, device_ids: Iterable[int], *, now: datetime
) -> list[Booking]:
    """Move waitlisted rows that fit now to PENDING/CONFIRMED, oldest request first.

    The caller holds the locks of these devices.
    """
    candidates = repository.waitlisted(session, device_ids, after=now)
    if not candidates:
        return []
    counts = repository.group_device_counts(session, {c.grouped_booking_id for c in candidates})
    promoted = []
    for row in candidates:
        item = [(row.device_id, row.start_time, row.end_time)]
        if repository.overlaps(session, item, exclude_ids=[row.id]):
            continue
        status = _policy_status(
            session,
            hours=_hours(row.start_time, row.end_time),
            devices=counts.get(row.grouped_booking_id, 1),
        )
        if not _lock_rows(session, [row.id], [S.CONFLICTING.value]):
            continue
        _set(session, [row.id], status=status)
        session.expire(row)
        promoted.append(row)
    return promoted


# -- changing ------------------------------------------------------------------------------


def _release(
    session: Session,
    rows: Sequence[Booking],
    *,
    actor: Actor,
    to: str,
    allowed: Sequence[str],
    reason: str | None = None,
    decided: bool = False,
) -> tuple[list[int], list[int], list[Booking]]:
    """Move rows out of holding (cancel, decline), then promote the waitlist behind them.

    ACTIVE rows that are cancelled end now instead (COMPLETED with the end moved to now).
    Returns (released ids, ended-early ids, promoted rows).
    """
    ids = [r.id for r in rows]
    devices = {r.device_id for r in rows}

    def work() -> tuple[list[int], list[int], list[Booking]]:
        now = utcnow()
        repository.lock_devices(session, devices)
        held = _lock_rows(session, ids, allowed)
        active = [i for i, r in held.items() if r.status == S.ACTIVE.value]
        others = [i for i in held if i not in active]
        values: dict[str, Any] = {"status": to}
        if decided:
            values.update(decided_by=actor.user_id, decided_at=now, decision_reason=reason)
        _set(session, others, **values)
        for i in active:
            end = max(now, held[i].start_time + timedelta(seconds=1))
            _set(session, [i], status=S.COMPLETED.value, end_time=end)
        session.expire_all()
        promoted = promote_waitlist(session, devices, now=now)
        return others, active, promoted

    return locked(session, work)


def _live(rows: Sequence[Booking], allowed: Sequence[str], what: str) -> list[Booking]:
    live = [r for r in rows if r.status in allowed]
    if not live:
        states = sorted({r.status for r in rows})
        raise InvalidTransition(
            f"nothing to {what}: the booking is {', '.join(states)}",
            details={"statuses": states},
        )
    return live


def cancel(
    session: Session,
    *,
    actor: Actor,
    grouped_booking_id: str | None = None,
    booking_id: int | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Cancel a group (or one row): frees the slot and promotes the waitlist behind it."""
    rows = _group(session, grouped_booking_id) if grouped_booking_id else []
    if booking_id is not None:
        rows = [_row(session, booking_id)]
    _may_change(session, actor, rows)
    live = _live(rows, LIVE, "cancel")
    cancelled, ended, promoted = _release(
        session, live, actor=actor, to=S.CANCELLED.value, allowed=LIVE, reason=reason
    )
    if not cancelled and not ended:
        raise InvalidTransition("the booking changed meanwhile; reload and retry")
    gid = rows[0].grouped_booking_id
    audit.record(
        session,
        actor,
        "bookings.cancel",
        "booking_group",
        gid,
        payload={
            "cancelled": cancelled,
            "ended_early": ended,
            "reason": reason,
            "promoted": [p.id for p in promoted],
        },
    )
    if ended:
        _active_changed(session, [gid])
    notify_groups(session, "cancelled", [gid], actor=actor, reason=reason)
    notify_groups(session, "promoted", {p.grouped_booking_id for p in promoted})
    return {
        "status": "cancelled",
        "booking_ids": cancelled + ended,
        "grouped_booking_ids": [gid],
        "promoted": [p.id for p in promoted],
    }


def _decision_rows(session: Session, data: Decision) -> list[Booking]:
    rows = {r.id: r for r in repository.rows_by_ids(session, data.booking_ids)}
    missing = sorted(set(data.booking_ids) - set(rows))
    if missing:
        raise NotFound(
            "no booking with id " + ", ".join(map(str, missing)),
            details={"entity": "booking", "ids": missing},
        )
    if data.grouped_booking_ids:
        found = repository.rows_of_groups(session, data.grouped_booking_ids)
        gone = sorted(set(data.grouped_booking_ids) - {r.grouped_booking_id for r in found})
        if gone:
            raise NotFound(
                "no booking group " + ", ".join(gone),
                details={"entity": "booking group", "ids": gone},
            )
        rows.update({r.id: r for r in found})
    return sorted(rows.values(), key=lambda r: r.id)


def _check_limits(session: Session, actor: Principal, rows: Sequence[Booking]) -> None:
    """Approvers act only on requests within their approval limits (hours, devices)."""
    limits = actor.approval_limits or {}
    if not limits.get("max_hours") and not limits.get("max_devices"):
        return
    counts = repository.group_device_counts(session, {r.grouped_booking_id for r in rows})
    by_group: dict[str, list[Booking]] = defaultdict(list)
    for r in rows:
        by_group[r.grouped_booking_id].append(r)
    over = []
    for gid, members in sorted(by_group.items()):
        hours = max(_hours(r.start_time, r.end_time) for r in members)
        devices = counts.get(gid, len(members))
        if not _within(limits, hours, devices):
            over.append({"grouped_booking_id": gid, "hours": round(hours, 2), "devices": devices})
    if over:
        raise PermissionDenied(
            f"{len(over)} of these requests exceed your approval limits",
            code="approval_limit_exceeded",
            details={"limits": limits, "over": over},
        )


def approve(session: Session, *, data: Decision, actor: Principal) -> dict[str, Any]:
    """Confirm pending rows (one or many), within the approver's limits."""
    rows = _decision_rows(session, data)
    now = utcnow()
    wrong = [r.id for r in rows if r.status != S.PENDING.value]
    late = [r.id for r in rows if r.status == S.PENDING.value and r.start_time <= now]
    if wrong or late:
        raise InvalidTransition(
            "only pending bookings whose start is still ahead can be approved",
            details={"not_pending": wrong, "started": late},
        )
    _check_limits(session, actor, rows)
    ids = [r.id for r in rows]

    def work() -> list[int]:
        held = sorted(_lock_rows(session, ids, [S.PENDING.value]))
        if held != ids:
            raise InvalidTransition(
                "some of these bookings changed meanwhile; reload and retry",
                details={"changed": sorted(set(ids) - set(held))},
            )
        _set(
            session,
            held,
            status=S.CONFIRMED.value,
            decided_by=actor.user_id,
            decided_at=now,
            decision_reason=None,
        )
        session.expire_all()
        return held

    approved = locked(session, work)
    gids = sorted({r.grouped_booking_id for r in rows})
    audit.record(
        session,
        actor,
        "bookings.approve",
        "booking_group",
        gids[0] if len(gids) == 1 else None,
        payload={"booking_ids": approved, "grouped_booking_ids": gids},
    )
    notify_groups(session, "approved", gids, actor=actor)
    return {"status": S.CONFIRMED.value, "booking_ids": approved, "grouped_booking_ids": gids}


DECLINABLE = [S.PENDING.value, S.CONFIRMED.value, S.CONFLICTING.value]


def decline(session: Session, *, data: Decline, actor: Principal) -> dict[str, Any]:
    """Reject rows with a reason (one or many): frees their slots for the waitlist."""
    rows = _decision_rows(session, data)
    wrong = [r.id for r in rows if r.status not in DECLINABLE]
    if wrong:
        raise InvalidTransition(
            "only pending, confirmed or waitlisted bookings can be declined",
            details={"not_declinable": wrong},
        )
    _check_limits(session, actor, rows)
    rejected, _, promoted = _release(
        session,
        rows,
        actor=actor,
        to=S.REJECTED.value,
        allowed=DECLINABLE,
        reason=data.reason,
        decided=True,
    )
    if len(rejected) != len(rows):
        raise InvalidTransition(
            "some of these bookings changed meanwhile; reload and retry",
            details={"changed": sorted({r.id for r in rows} - set(rejected))},
        )
    gids = sorted({r.grouped_booking_id for r in rows})
    audit.record(
        session,
        actor,
        "bookings.decline",
        "booking_group",
        gids[0] if len(gids) == 1 else None,
        payload={
            "booking_ids": rejected,
            "grouped_booking_ids": gids,
            "reason": data.reason,
            "promoted": [p.id for p in promoted],
        },
    )
    notify_groups(session, "declined", gids, actor=actor, reason=data.reason)
    notify_groups(session, "promoted", {p.grouped_booking_id for p in promoted})
    return {
        "status": S.REJECTED.value,
        "booking_ids": rejected,
        "grouped_booking_ids": gids,
        "promoted": [p.id for p in promoted],
    }


def extend(
    session: Session,
    *,
    end: datetime,
    actor: Actor,
    grouped_booking_id: str | None = None,
    booking_id: int | None = None,
) -> dict[str, Any]:
    """Move the end of a group's live rows (or one row): later is re-checked for conflicts,
    earlier frees the slot for the waitlist. A confirmed booking that grows beyond what is
    confirmed without approval goes back to pending."""
    rows = _group(session, grouped_booking_id) if grouped_booking_id else []
    if booking_id is not None:
        rows = [_row(session, booking_id)]
    _may_change(session, actor, rows)
    targets = _live(rows, LIVE, "extend")
    end = as_utc(end)
    now = utcnow()
    max_hours = int(settings.get(session, "booking.max_duration_hours"))
    for r in targets:
        if end <= r.start_time:
            raise Invalid("the end must be after the start", field="end", code="invalid_time_range")
        if end <= now:
            raise Invalid("the new end is in the past", field="end", code="end_in_past")
        if end - r.start_time > timedelta(hours=max_hours):
            raise Invalid(
                f"a booking may last at most {max_hours} hours",
                field="end",
                code="duration_too_long",
                details={"max_hours": max_hours},
            )
    ids = sorted(r.id for r in targets)
    gids = {r.grouped_booking_id for r in targets}

    def work() -> tuple[list[int], list[int], list[Booking]]:
        repository.lock_devices(session, {r.device_id for r in targets})
        held = _lock_rows(session, ids, LIVE)
        if sorted(held) != ids:
            raise InvalidTransition("the booking changed meanwhile; reload and retry")
        growing = [
            (r.device_id, r.end_time, end)
            for r in held.values()
            if end > r.end_time and r.status != S.CONFLICTING.value
        ]
        conflicts = _conflict_entries(session, growing, exclude_ids=ids)
        if conflicts:
            raise conflict_error(conflicts)
        _set(session, ids, end_time=end, end_notice_sent_at=None)
        devices = max(repository.group_device_counts(session, gids).values() or [1])
        back_to_pending = [
            i
            for i, r in held.items()
            if r.status == S.CONFIRMED.value
            and _policy_status(
                session, hours=_hours(r.start_time, end), devices=devices, requester=actor
            )
            == S.PENDING.value
        ]
        _set(session, back_to_pending, status=S.PENDING.value)
        session.expire_all()
        shrunk = {r.device_id for r in held.values() if end < r.end_time}
        promoted = promote_waitlist(session, shrunk, now=now) if shrunk else []
        previous.update({str(i): r.end_time.isoformat() for i, r in held.items()})
        return ids, back_to_pending, promoted

    previous: dict[str, str] = {}
    changed, pending, promoted = _guarded(
        session, work, [(r.device_id, r.start_time, end) for r in targets]
    )
    gid = rows[0].grouped_booking_id
    audit.record(
        session,
        actor,
        "bookings.extend",
        "booking_group",
        gid,
        payload={
            "booking_ids": changed,
            "end": end.isoformat(),
            "previous_ends": previous,
            "back_to_pending": pending,
            "promoted": [p.id for p in promoted],
        },
    )
    notify_groups(session, "promoted", {p.grouped_booking_id for p in promoted})
    return groups_view(session, [gid])[0]


def rebook(
    session: Session, *, grouped_booking_id: str, data: RebookBody, actor: Actor
) -> dict[str, Any]:
    """Book the devices of a group again at another time, as a new group."""
    rows = _group(session, grouped_booking_id)
    _may_change(session, actor, rows)
    owner_id = rows[0].user_id
    names = repository.collaborator_names(session, [grouped_booking_id])[grouped_booking_id]
    owner = auth_repository.user_by_id(session, owner_id)
    if actor.user_id != owner_id and owner is not None:
        names = [owner.username, *names]  # a collaborator rebooks: the owner joins them
    names = [n for n in names if n.lower() != actor.username.lower()]
    request = BookingCreate.model_construct(
        items=[
            BookingItem(device_id=d, start=data.start, end=data.end)
            for d in sorted({r.device_id for r in rows})
        ],
        comment=data.comment if data.comment is not None else rows[0].comment,
        collaborators=names,
        waitlist=data.waitlist,
        topology_id=rows[0].topology_id,
    )
    return create(session, data=request, actor=actor, source={"rebook_of": grouped_booking_id})


def update_group(
    session: Session, *, grouped_booking_id: str, data: GroupUpdate, actor: Actor
) -> dict[str, Any]:
    """Change a group's comment or replace its collaborators."""
    rows = _group(session, grouped_booking_id)
    _may_change(session, actor, rows)
    changes = data.model_dump(exclude_unset=True)
    payload: dict[str, Any] = {}
    if "comment" in changes:
        for r in rows:
            r.comment = changes["comment"]
        payload["comment"] = changes["comment"]
    if "collaborators" in changes:
        owner_id = rows[0].user_id
        wanted = {
            u.id: u for u in _collaborators(session, changes["collaborators"] or [], owner_id)
        }
        current = {c.user_id: c for c in repository.collaborator_rows(session, grouped_booking_id)}
        for user_id, row in current.items():
            if user_id not in wanted:
                session.delete(row)
        for user_id in wanted.keys() - current.keys():
            session.add(
                BookingCollaborator(
                    grouped_booking_id=grouped_booking_id, user_id=user_id, added_by=actor.user_id
                )
            )
        payload["collaborators"] = sorted(u.username for u in wanted.values())
    session.flush()
    audit.record(
        session, actor, "bookings.update", "booking_group", grouped_booking_id, payload=payload
    )
    return groups_view(session, [grouped_booking_id])[0]


# -- reading -------------------------------------------------------------------------------


def get_group(session: Session, *, grouped_booking_id: str, actor: Principal) -> dict[str, Any]:
    """One group, for its owner, collaborators and anyone with bookings:read."""
    rows = _group(session, grouped_booking_id)
    _may_see(session, actor, rows)
    return groups_view(session, [grouped_booking_id])[0]


def get_booking(session: Session, *, booking_id: int, actor: Principal) -> dict[str, Any]:
    """One row, for its owner, collaborators and anyone with bookings:read."""
    row = _row(session, booking_id)
    _may_see(session, actor, [row])
    names = repository.device_names(session, [row.device_id])
    owner = auth_repository.user_by_id(session, row.user_id)
    return booking_view(row, names.get(row.device_id, ""), owner.username if owner else "")


def my_groups(
    session: Session, *, actor: Principal, scope: str, page: PageParams
) -> tuple[list[dict[str, Any]], int]:
    """Groups the user owns or collaborates on (four queries whatever the page size)."""
    rows, total = fetch_page(
        session,
        repository.my_groups_query(_user_id(actor), scope=scope, now=utcnow()),
        page,
        scalars=False,
    )
    return groups_view(session, [r[0] for r in rows]), total


def group_history(
    session: Session, *, grouped_booking_id: str, actor: Principal, limit: int = 50
) -> list[dict[str, Any]]:
    """What was done to a group (its audit trail), newest first, for those who may see it."""
    from labkeeper.admin import repository as admin_repository

    _may_see(session, actor, _group(session, grouped_booking_id))
    stmt = admin_repository.audit_query(entity_type="booking_group", entity_id=grouped_booking_id)
    rows, _ = fetch_page(session, stmt, PageParams(limit=limit, offset=0))
    return [
        {
            "at": r.created_at,
            "action": r.action,
            "username": r.actor_username,
            "outcome": r.outcome,
            "message": r.message,
            "payload": r.payload or {},
        }
        for r in rows
    ]


def availability_now(
    session: Session, device_ids: Iterable[int], *, now: datetime | None = None
) -> dict[int, dict[str, Any]]:
    """What holds each device at this moment (maintenance first, then a booking) and until
    when; devices held by nothing are left out. Three queries for any number of devices."""
    wanted = set(device_ids)
    if not wanted:
        return {}
    now = now or utcnow()
    edge = now + timedelta(seconds=1)
    out: dict[int, dict[str, Any]] = {}
    rows, names = repository.window_bookings(session, now, edge, now=now, statuses=HOLDING)
    for r in rows:
        if r[0] in wanted and r[0] not in out:
            out[r[0]] = {"state": "booked", **_busy_booking(r, names)}
    for w in repository.window_maintenance(session, now, edge):
        if w.device_id in wanted and out.get(w.device_id, {}).get("state") != "maintenance":
            out[w.device_id] = {"state": "maintenance", **_busy_window(w)}
    return out


def list_bookings(
    session: Session, *, filters: dict[str, Any], page: PageParams
) -> tuple[list[dict[str, Any]], int]:
    """All rows, filtered and sorted (two queries whatever the page size)."""
    rows, total = fetch_page(session, repository.bookings_query(**filters), page, scalars=False)
    return [booking_view(b, d, u) for b, d, u in rows], total


EXPORT_COLUMNS = [
    "booking_id",
    "grouped_booking_id",
    "device_id",
    "device_name",
    "user_id",
    "username",
    "start",
    "end",
    "status",
    "comment",
    "collaborators",
    "topology_id",
    "decided_by",
    "decided_at",
    "decision_reason",
    "maintenance_conflict_id",
    "created_at",
]
EXPORT_LIMIT = 100_000


def export_rows(session: Session, *, filters: dict[str, Any]) -> Iterator[list[Any]]:
    """The filtered rows as CSV cells (header first), at most 100,000 rows."""
    rows = list(session.execute(repository.bookings_query(**filters).limit(EXPORT_LIMIT)))
    names = repository.collaborator_names(session, {b.grouped_booking_id for b, _, _ in rows})
    yield EXPORT_COLUMNS
    for booking, device_name, username in rows:
        view = booking_view(booking, device_name, username)
        view["collaborators"] = ";".join(names.get(booking.grouped_booking_id, []))
        yield [
            v.isoformat() if isinstance(v, datetime) else ("" if v is None else v)
            for v in (view[c] for c in EXPORT_COLUMNS)
        ]


def pending_groups(
    session: Session, *, actor: Principal, page: PageParams
) -> tuple[list[dict[str, Any]], int]:
    """Requests waiting for approval, oldest first, saying which are within my limits."""
    found, total = fetch_page(session, repository.pending_groups_query(), page, plain=True)
    gids = [g for g, _ in found]
    counts = repository.group_device_counts(session, gids)
    by_group: dict[str, list[Any]] = defaultdict(list)
    for booking, username in repository.pending_rows(session, gids):
        by_group[booking.grouped_booking_id].append((booking, username))
    items = []
    for gid in gids:
        members = by_group.get(gid, [])
        if not members:
            continue
        hours = max(_hours(b.start_time, b.end_time) for b, _ in members)
        first = members[0][0]
        items.append(
            {
                "grouped_booking_id": gid,
                "user_id": first.user_id,
                "username": members[0][1],
                "comment": first.comment,
                "devices": counts.get(gid, len(members)),
                "hours": round(hours, 2),
                "start": min(b.start_time for b, _ in members),
                "end": max(b.end_time for b, _ in members),
                "booking_ids": [b.id for b, _ in members],
                "within_my_limits": _within(
                    actor.approval_limits, hours, counts.get(gid, len(members))
                ),
                "created_at": min(b.created_at for b, _ in members),
            }
        )
    return items, total


# -- favorites -----------------------------------------------------------------------------


def favorite_view(row: BookingFavorite) -> dict[str, Any]:
    """A favorite as the API shows it."""
    return {
        "id": row.id,
        "name": row.name,
        "grouped_booking_id": row.grouped_booking_id,
        "devices": row.device_snapshot,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def list_favorites(
    session: Session, *, actor: Principal, page: PageParams
) -> tuple[list[dict[str, Any]], int]:
    """A user's favorites by name (two queries)."""
    rows, total = fetch_page(session, repository.favorites_query(_user_id(actor)), page)
    return [favorite_view(r) for r in rows], total


def create_favorite(session: Session, *, data: FavoriteCreate, actor: Principal) -> BookingFavorite:
    """Save a group's devices (or a list of devices) under a name unique to the user."""
    owner = _user_id(actor)
    if data.grouped_booking_id is not None:
        rows = _group(session, data.grouped_booking_id)
        _may_see(session, actor, rows)
        device_ids = {r.device_id for r in rows}
    else:
        device_ids = set(data.device_ids or [])
    names = repository.device_names(session, device_ids)
    missing = sorted(device_ids - set(names))
    if missing:
        raise Invalid(
            "no device with id " + ", ".join(map(str, missing)),
            field="device_ids",
            code="unknown_device",
            details={"device_ids": missing},
        )
    if repository.favorite_by_name(session, owner, data.name) is not None:
        raise AlreadyExists(
            f"you already have a favorite called {data.name!r}", details={"field": "name"}
        )
    row = BookingFavorite(
        user_id=owner,
        name=data.name,
        grouped_booking_id=data.grouped_booking_id,
        device_snapshot=[
            {"device_id": i, "name": n} for i, n in sorted(names.items(), key=lambda x: x[1])
        ],
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "favorites.create",
        "booking_favorite",
        row.id,
        payload={"name": data.name, "device_ids": sorted(device_ids)},
    )
    return row


def _favorite(session: Session, favorite_id: int, actor: Actor) -> BookingFavorite:
    row = session.get(BookingFavorite, favorite_id)
    if row is None or row.user_id != actor.user_id:
        raise not_found("favorite", favorite_id)
    return row


def delete_favorite(session: Session, *, favorite_id: int, actor: Principal) -> None:
    """Forget one of one's favorites."""
    row = _favorite(session, favorite_id, actor)
    session.delete(row)
    session.flush()
    audit.record(
        session,
        actor,
        "favorites.delete",
        "booking_favorite",
        favorite_id,
        payload={"name": row.name},
    )


def book_favorite(
    session: Session, *, favorite_id: int, data: FavoriteBook, actor: Principal
) -> dict[str, Any]:
    """Book a favorite's devices for a new time, in one call."""
    row = _favorite(session, favorite_id, actor)
    request = BookingCreate.model_construct(
        items=[
            BookingItem(device_id=d["device_id"], start=data.start, end=data.end)
            for d in row.device_snapshot
        ],
        comment=data.comment,
        collaborators=data.collaborators,
        waitlist=data.waitlist,
        topology_id=None,
    )
    return create(session, data=request, actor=actor, source={"favorite_id": favorite_id})


# -- availability and timeline -------------------------------------------------------------


def check_window(start: datetime, end: datetime, *, longest: timedelta = MAX_WINDOW) -> None:
    """A window must be ordered and not too long."""
    if end <= start:
        raise Invalid("the end must be after the start", field="end", code="invalid_time_range")
    if end - start > longest:
        raise Invalid(
            f"a window may span at most {longest.days} days",
            field="end",
            code="window_too_long",
            details={"max_days": longest.days},
        )


def _busy_booking(r: Any, names: dict[int, str]) -> dict[str, Any]:
    _, start, end, booking_id, status, gid, user_id = r
    return {
        "kind": "booking",
        "id": booking_id,
        "start": start.replace(tzinfo=UTC),
        "end": end.replace(tzinfo=UTC),
        "status": status,
        "grouped_booking_id": gid,
        "user_id": user_id,
        "username": names.get(user_id),
    }


def _busy_window(w: Any) -> dict[str, Any]:
    return {
        "kind": "maintenance",
        "id": w.id,
        "start": w.start_time,
        "end": w.end_time,
        "reason": w.reason,
    }


def device_availability(
    session: Session, *, device_id: int, start: datetime, end: datetime
) -> dict[str, Any]:
    """Whether one device is free for a window, and what occupies it."""
    start, end = as_utc(start), as_utc(end)
    check_window(start, end)
    info = repository.devices_info(session, [device_id]).get(device_id)
    if info is None:
        raise not_found("device", device_id)
    busy = [
        {
            "kind": o.kind,
            "id": o.id,
            "start": o.start_time,
            "end": o.end_time,
            "status": o.status,
            "grouped_booking_id": o.grouped_booking_id,
            "user_id": o.user_id,
            "username": o.username,
            "reason": o.reason,
        }
        for o in repository.overlaps(session, [(device_id, start, end)])
    ]
    bookable = bool(info.is_schedulable) and info.status not in NOT_BOOKABLE
    return {
        "device_id": device_id,
        "name": info.name,
        "bookable": bookable,
        "free": bookable and not busy,
        "busy": busy,
    }


def free_devices(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    filters: dict[str, Any],
    page: PageParams,
) -> tuple[list[dict[str, Any]], int]:
    """Bookable devices with nothing holding them in the window (two queries)."""
    start, end = as_utc(start), as_utc(end)
    check_window(start, end)
    busy = repository.busy_device_ids(session, start, end)
    rows = repository.devices(session, bookable_only=True, **filters)
    free = [
        {"device_id": r.id, "name": r.name, "device_type_id": r.device_type_id, "status": r.status}
        for r in rows
        if r.id not in busy
    ]
    return free[page.offset : page.offset + page.limit], len(free)


def timeline(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    filters: dict[str, Any],
    page: PageParams,
) -> dict[str, Any]:
    """Bookings and maintenance per device for a window: the UI's grid (a page of devices)."""
    start, end = as_utc(start), as_utc(end)
    check_window(start, end)
    devices, total = fetch_page(session, repository.devices_query(**filters), page, plain=True)
    lanes: dict[int, dict[str, Any]] = {
        device_id: {
            "device_id": device_id,
            "name": name,
            "device_type_id": type_id,
            "status": status,
            "bookable": bool(schedulable) and status not in NOT_BOOKABLE,
            "bookings": [],
            "maintenance": [],
        }
        for device_id, name, type_id, status, schedulable in devices
    }
    if lanes:
        rows, names = repository.window_bookings(session, start, end, now=utcnow())
        for r in rows:
            lane = lanes.get(r[0])
            if lane is not None:
                lane["bookings"].append(_busy_booking(r, names))
        for w in repository.window_maintenance(session, start, end):
            lane = lanes.get(w.device_id)
            if lane is not None:
                lane["maintenance"].append(_busy_window(w))
    return {
        "start": start,
        "end": end,
        "items": list(lanes.values()),
        "total": total,
        "limit": page.limit,
        "offset": page.offset,
    }


# -- lifecycle (the periodic job) ----------------------------------------------------------


@dataclass
class Moved:
    """What one lifecycle step did."""

    rows: int = 0
    groups: int = 0
    promoted: int = 0


def _by_group(rows: Iterable[Any]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        out[r.grouped_booking_id].append(r.id)
    return out


def _transition(
    session: Session,
    due: Sequence[Any],
    *,
    allowed: Sequence[str],
    action: str,
    values: Callable[[Any], dict[str, Any]],
    now: datetime,
    lock_devices: bool = False,
    extra: Sequence[Any] = (),
) -> tuple[list[Any], list[Booking]]:
    """Lock due rows still in `allowed`, apply `values(row)`, audit one row per group."""
    by_id = {r.id: r for r in due}

    def work() -> tuple[list[Any], list[Booking]]:
        if lock_devices:
            repository.lock_devices(session, {r.device_id for r in due})
        held = _lock_rows(session, by_id, allowed, *extra)
        changes: dict[tuple[tuple[str, Any], ...], list[int]] = defaultdict(list)
        for i, r in held.items():
            changes[tuple(sorted(values(r).items()))].append(i)
        for change, ids in changes.items():
            _set(session, ids, **dict(change))
        session.expire_all()
        promoted: list[Booking] = []
        if lock_devices:
            freed = {r.device_id for r in held.values() if r.status in HOLDING}
            promoted = promote_waitlist(session, freed, now=now) if freed else []
        return [by_id[i] for i in held], promoted

    moved, promoted = locked(session, work)
    for gid, ids in sorted(_by_group(moved).items()):
        audit.record(session, SYSTEM, action, "booking_group", gid, payload={"booking_ids": ids})
    return moved, promoted


def expire_due(session: Session, *, now: datetime | None = None, limit: int = 500) -> Moved:
    """Pending and waitlisted rows whose start has passed become EXPIRED."""
    now = now or utcnow()
    due = repository.due_rows(
        session,
        statuses=[S.PENDING.value, S.CONFLICTING.value],
        start_before=now,
        limit=limit,
    )
    if not due:
        return Moved()
    moved, promoted = _transition(
        session,
        due,
        allowed=[S.PENDING.value, S.CONFLICTING.value],
        action="bookings.expire",
        now=now,
        values=lambda r: {"status": S.EXPIRED.value},
        lock_devices=True,
    )
    notify_groups(session, "expired", {r.grouped_booking_id for r in moved})
    notify_groups(session, "promoted", {p.grouped_booking_id for p in promoted})
    return Moved(len(moved), len(_by_group(moved)), len(promoted))


def start_due(session: Session, *, now: datetime | None = None, limit: int = 500) -> Moved:
    """Confirmed rows whose start has come become ACTIVE (or COMPLETED if already over)."""
    now = now or utcnow()
    due = repository.due_rows(
        session, statuses=[S.CONFIRMED.value], start_before=now, end_after=now, limit=limit
    )
    if not due:
        return Moved()
    moved, _ = _transition(
        session,
        due,
        allowed=[S.CONFIRMED.value],
        action="bookings.start",
        now=now,
        values=lambda r: {"status": S.ACTIVE.value},
    )
    _active_changed(session, {r.grouped_booking_id for r in moved})
    notify_groups(session, "started", {r.grouped_booking_id for r in moved})
    return Moved(len(moved), len(_by_group(moved)))


def complete_due(session: Session, *, now: datetime | None = None, limit: int = 500) -> Moved:
    """Active (or confirmed) rows whose end has passed become COMPLETED."""
    now = now or utcnow()
    due = repository.due_rows(
        session, statuses=[S.ACTIVE.value, S.CONFIRMED.value], end_before=now, limit=limit
    )
    if not due:
        return Moved()
    moved, _ = _transition(
        session,
        due,
        allowed=[S.ACTIVE.value, S.CONFIRMED.value],
        action="bookings.complete",
        now=now,
        values=lambda r: {"status": S.COMPLETED.value},
    )
    _active_changed(session, {r.grouped_booking_id for r in moved})
    return Moved(len(moved), len(_by_group(moved)))


def send_end_notices(session: Session, *, now: datetime | None = None, limit: int = 500) -> Moved:
    """Tell owners their active booking ends soon (booking.end_notice_minutes; once)."""
    now = now or utcnow()
    minutes = int(settings.get(session, "booking.end_notice_minutes"))
    if minutes <= 0:
        return Moved()
    due = repository.due_rows(
        session,
        statuses=[S.ACTIVE.value],
        end_before=now + timedelta(minutes=minutes),
        end_after=now,
        notice_unsent=True,
        limit=limit,
    )
    if not due:
        return Moved()
    moved, _ = _transition(
        session,
        due,
        allowed=[S.ACTIVE.value],
        action="bookings.end_notice",
        now=now,
        values=lambda r: {"end_notice_sent_at": now},
        extra=[Booking.end_notice_sent_at.is_(None)],
    )
    notify_groups(session, "end_notice", {r.grouped_booking_id for r in moved}, minutes=minutes)
    return Moved(len(moved), len(_by_group(moved)))


def lifecycle_due(session: Session, now: datetime) -> bool:
    """Whether any row waits for a lifecycle step (a few indexed one-row lookups)."""
    minutes = int(settings.get(session, "booking.end_notice_minutes"))
    checks: list[dict[str, Any]] = [
        {"statuses": [S.PENDING.value, S.CONFLICTING.value], "start_before": now},
        {"statuses": [S.CONFIRMED.value], "start_before": now, "end_after": now},
        {"statuses": [S.ACTIVE.value, S.CONFIRMED.value], "end_before": now},
    ]
    if minutes > 0:
        checks.append(
            {
                "statuses": [S.ACTIVE.value],
                "end_before": now + timedelta(minutes=minutes),
                "end_after": now,
                "notice_unsent": True,
            }
        )
    return any(repository.due_rows(session, limit=1, **check) for check in checks)


LIFECYCLE_STEPS: dict[str, Callable[..., Moved]] = {
    "expired": expire_due,
    "started": start_due,
    "completed": complete_due,
    "end_notices": send_end_notices,
}


# -- dashboard -----------------------------------------------------------------------------


def dashboard(session: Session) -> dict[str, Any]:
    """What admins look at first: approvals, conflicts, devices, use (constant queries)."""
    now = utcnow()
    week = timedelta(days=7)
    pending = S.PENDING.value
    # Requests that needed an approver: still pending, or decided by someone. A request
    # starts after it was made, so the (status, start_time) index bounds the search.
    needed_approval = (Booking.status == pending) | Booking.decided_by.is_not(None)
    every_status = Booking.status.in_([s.value for s in S])
    this_week = repository.count_groups(
        session,
        every_status,
        Booking.start_time >= now - week - START_GRACE,
        needed_approval,
        Booking.created_at >= now - week,
    )
    last_week = repository.count_groups(
        session,
        every_status,
        Booking.start_time >= now - 2 * week - START_GRACE,
        needed_approval,
        Booking.created_at >= now - 2 * week,
        Booking.created_at < now - week,
    )
    conflicting = repository.count_rows(session, Booking.status == S.CONFLICTING.value)
    maintenance = repository.count_rows(
        session, Booking.status.in_(HOLDING), Booking.maintenance_conflict_id.is_not(None)
    )
    by_status = repository.devices_by_status(session)
    active_rows = repository.count_rows(session, Booking.status == S.ACTIVE.value)
    active_groups = repository.count_groups(session, Booking.status == S.ACTIVE.value)
    used: dict[int, float] = defaultdict(float)
    since = now - week
    for device_id, start, end in repository.used_intervals(session, since, now):
        used[device_id] += (min(end, now) - max(start, since)).total_seconds()
    total_seconds = week.total_seconds()
    utilisation = sorted(
        (
            {
                "device_id": d.id,
                "name": d.name,
                "hours": round(used.get(d.id, 0.0) / 3600, 2),
                "percent": round(100 * used.get(d.id, 0.0) / total_seconds, 1),
            }
            for d in repository.all_devices(session)
        ),
        key=lambda u: (-u["percent"], u["name"]),
    )
    pending_groups_now = repository.count_groups(session, Booking.status == pending)
    return {
        "generated_at": now,
        "pending_approvals": {
            "groups": pending_groups_now,
            "rows": repository.count_rows(session, Booking.status == pending),
            "requested_last_7d": this_week,
            "requested_previous_7d": last_week,
            "change": this_week - last_week,
        },
        "active_conflicts": {
            "waitlisted": conflicting,
            "maintenance_clashes": maintenance,
            "total": conflicting + maintenance,
        },
        "devices": {"total": sum(by_status.values()), "by_status": by_status},
        "active_now": {"rows": active_rows, "groups": active_groups},
        "utilisation": utilisation,
        "recent_activity": [
            {
                "id": a.id,
                "created_at": a.created_at,
                "actor": a.actor_username,
                "action": a.action,
                "entity_type": a.entity_type,
                "entity_id": a.entity_id,
                "outcome": a.outcome,
                "message": a.message,
            }
            for a in repository.recent_audit(session)
        ],
        "new_users_7d": repository.new_users_since(session, since),
    }
