"""Queries of the booking domain: overlaps, groups, lists, availability, timeline, dashboard.

Overlap queries lean on one fact: rows in a live status (PENDING, CONFIRMED, ACTIVE, CONFLICTING)
are current or future ones, because the lifecycle job moves past rows on. So "live rows that
overlap a window" is a short range of the (status, start_time) / (status, end_time) indexes
however much history the table holds, and per device the (device_id, end_time, start_time)
index answers the conflict check: rows ending after a window's start are the device's present
and future ones.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import (
    DateTime,
    Row,
    Select,
    String,
    and_,
    bindparam,
    case,
    distinct,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from labkeeper.admin.models import AuditLog
from labkeeper.auth.models import User
from labkeeper.booking.models import (
    HOLDING_STATUSES,
    Booking,
    BookingCollaborator,
    BookingFavorite,
    BookingStatus,
)
from labkeeper.core.db import read, write
from labkeeper.core.time import UTCDateTime
from labkeeper.inventory.models import Device, DeviceType, MaintenanceWindow
from labkeeper.topology.models import Topology


class unindexed(FunctionElement[datetime]):
    """A time column the SQLite planner must not use an index for (`+column`; plain
    elsewhere). SQLite's planner has no histograms: for `start_time < :end AND end_time >
    :start` it may walk a whole device's or status's history on the start_time side of an
    index when the end_time side is the short one."""

    type = UTCDateTime()
    inherit_cache = True
    name = "unindexed"


@compiles(unindexed)
def _plain(element: unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(unindexed, "sqlite")
def _unary_plus(element: unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


HOLDING = [s.value for s in HOLDING_STATUSES]
LIVE = [*HOLDING, BookingStatus.CONFLICTING.value]
# What the timeline shows: live rows and finished ones that really used the device.
SHOWN = [*LIVE, BookingStatus.COMPLETED.value]
# Device statuses that cannot be booked whatever their type says.
NOT_BOOKABLE = ("retired", "unavailable")

Item = tuple[int, datetime, datetime]
# Rows and selects of any number of columns.
AnyRow: TypeAlias = Row[*tuple[Any, ...]]
AnySelect: TypeAlias = Select[*tuple[Any, ...]]


# -- devices -------------------------------------------------------------------------------


def devices_info(session: Session, ids: Iterable[int]) -> dict[int, AnyRow]:
    """Id, name, status, type and whether the type is schedulable, for some devices."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {r.id: r for r in read(session, _INFO, {"ids": wanted})}


# The statements of the booking path are built once, with bound parameters: building one
# (SQLAlchemy's operators and coercions) cost more CPU than running it.
_INFO: AnySelect = (
    select(
        Device.id,
        Device.name,
        Device.status,
        Device.device_type_id,
        DeviceType.is_schedulable,
    )
    .join(DeviceType, DeviceType.id == Device.device_type_id)
    .where(Device.id.in_(bindparam("ids", expanding=True)))
)
_LOCK_AND_INFO = _INFO.order_by(Device.id).with_for_update(of=Device, key_share=True)
_LOCK = (
    select(Device.id)
    .where(Device.id.in_(bindparam("ids", expanding=True)))
    .order_by(Device.id)
    .with_for_update()
)


_INSERT_BOOKINGS = insert(Booking).returning(Booking.id, sort_by_parameter_order=True)
_INSERT_COLLABORATORS = insert(BookingCollaborator)


def insert_bookings(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert booking rows (column values by name; every row the same names) past the ORM's
    unit of work; their ids, in order. Devices and users must exist already."""
    return list(write(session, _INSERT_BOOKINGS, rows).scalars())


def insert_collaborators(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert collaborator rows past the ORM's unit of work."""
    if rows:
        write(session, _INSERT_COLLABORATORS, rows)


def lock_devices(session: Session, ids: Iterable[int]) -> dict[int, AnyRow]:
    """Lock device rows in id order until the transaction ends; returns `devices_info` of them.

    PostgreSQL takes the locks and reads the devices in one statement (FOR NO KEY UPDATE OF
    devices: it conflicts with itself, not with the KEY SHARE locks that foreign key checks
    take, so inserts elsewhere that merely reference a device are not held up). MariaDB cannot
    lock only one table of a join, so it locks, then reads. On SQLite the write transaction
    began IMMEDIATE and holds the database's write lock already: it only reads.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    backend = session.get_bind().dialect.name
    if backend == "postgresql":
        return {r.id: r for r in read(session, _LOCK_AND_INFO, {"ids": wanted})}
    if backend != "sqlite":
        read(session, _LOCK, {"ids": wanted}).all()
    return devices_info(session, wanted)


def topology_exists(session: Session, topology_id: int) -> bool:
    """Whether a topology exists."""
    return session.scalar(select(Topology.id).where(Topology.id == topology_id)) is not None


# -- overlaps ------------------------------------------------------------------------------


def _overlaps(model: Any, items: Sequence[Item]) -> Any:
    return or_(
        *[
            and_(model.device_id == device, model.start_time < end, model.end_time > start)
            for device, start, end in items
        ]
    )


def booking_overlaps(
    session: Session,
    items: Sequence[Item],
    *,
    exclude_ids: Iterable[int] = (),
    statuses: Sequence[str] = HOLDING,
) -> list[AnyRow]:
    """Bookings in `statuses` that overlap any of the items, with their owner's username."""
    if not items:
        return []
    stmt = (
        select(
            Booking.id,
            Booking.grouped_booking_id,
            Booking.device_id,
            Booking.start_time,
            Booking.end_time,
            Booking.status,
            Booking.user_id,
            User.username,
        )
        .join(User, User.id == Booking.user_id)
        .where(Booking.status.in_(statuses), _overlaps(Booking, items))
        .order_by(Booking.device_id, Booking.start_time)
    )
    excluded = list(exclude_ids)
    if excluded:
        stmt = stmt.where(Booking.id.not_in(excluded))
    return list(session.execute(stmt))


def maintenance_overlaps(
    session: Session, items: Sequence[Item], *, exclude_ids: Iterable[int] = ()
) -> list[AnyRow]:
    """Maintenance windows (not cancelled) that overlap any of the items."""
    if not items:
        return []
    stmt = (
        select(
            MaintenanceWindow.id,
            MaintenanceWindow.device_id,
            MaintenanceWindow.start_time,
            MaintenanceWindow.end_time,
            MaintenanceWindow.reason,
        )
        .where(MaintenanceWindow.cancelled_at.is_(None), _overlaps(MaintenanceWindow, items))
        .order_by(MaintenanceWindow.device_id, MaintenanceWindow.start_time)
    )
    excluded = list(exclude_ids)
    if excluded:
        stmt = stmt.where(MaintenanceWindow.id.not_in(excluded))
    return list(session.execute(stmt))


def overlaps(
    session: Session, items: Sequence[Item], *, exclude_ids: Iterable[int] = ()
) -> list[AnyRow]:
    """Holding bookings and maintenance windows (not cancelled) that overlap any item, in one
    query: rows of (kind, id, grouped_booking_id, device_id, start_time, end_time, status,
    user_id, username, reason)."""
    if not items:
        return []
    excluded = list(exclude_ids)
    params: dict[str, Any] = {"excluded": excluded} if excluded else {}
    for i, (device, start, end) in enumerate(items):
        params.update({f"d{i}": device, f"s{i}": start, f"e{i}": end})
    rows: list[AnyRow] = list(read(session, _overlaps_query(len(items), bool(excluded)), params))
    return sorted(rows, key=lambda r: (r.device_id, r.start_time, r.kind, r.id))


@functools.lru_cache(maxsize=64)
def _overlaps_query(count: int, excluding: bool) -> Any:
    """The statement of `overlaps` for `count` items, items bound as d<i>, s<i>, e<i>."""

    def overlapping(model: Any) -> Any:
        return or_(
            *[
                and_(
                    model.device_id == bindparam(f"d{i}"),
                    model.start_time < bindparam(f"e{i}"),
                    model.end_time > bindparam(f"s{i}"),
                )
                for i in range(count)
            ]
        )

    bookings = (
        select(
            literal("booking", String(11)).label("kind"),
            Booking.id,
            Booking.grouped_booking_id,
            Booking.device_id,
            Booking.start_time,
            Booking.end_time,
            Booking.status,
            Booking.user_id,
            User.username,
            null().label("reason"),
        )
        .join(User, User.id == Booking.user_id)
        .where(Booking.status.in_(HOLDING), overlapping(Booking))
    )
    if excluding:
        bookings = bookings.where(Booking.id.not_in(bindparam("excluded", expanding=True)))
    windows = select(
        literal("maintenance", String(11)).label("kind"),
        MaintenanceWindow.id,
        null(),
        MaintenanceWindow.device_id,
        MaintenanceWindow.start_time,
        MaintenanceWindow.end_time,
        null(),
        null(),
        null(),
        MaintenanceWindow.reason,
    ).where(MaintenanceWindow.cancelled_at.is_(None), overlapping(MaintenanceWindow))
    return union_all(bookings, windows)


def holding_count(session: Session, user_id: int, *, started_after: datetime) -> int:
    """How many rows a user holds (pending, confirmed or active) that started after a time.

    The bound keeps this a short range of (user_id, start_time) however long the user's
    history: rows that started before it have ended (the caller passes now minus the
    longest booking allowed).
    """
    return int(
        read(session, _HOLDING_COUNT, {"user_id": user_id, "after": started_after}).scalar() or 0
    )


_HOLDING_COUNT: AnySelect = (
    select(func.count())
    .select_from(Booking)
    .where(
        Booking.user_id == bindparam("user_id"),
        Booking.start_time > bindparam("after"),
        Booking.status.in_(HOLDING),
    )
)


def waitlisted(session: Session, device_ids: Iterable[int], *, after: datetime) -> list[Booking]:
    """Waitlisted rows of some devices that start after a time, in the order they were made."""
    ids = sorted(set(device_ids))
    if not ids:
        return []
    return list(
        session.scalars(
            select(Booking)
            .where(
                Booking.device_id.in_(ids),
                Booking.status == BookingStatus.CONFLICTING.value,
                Booking.start_time > after,
            )
            .order_by(Booking.id)
        )
    )


# -- groups --------------------------------------------------------------------------------


def group_rows(session: Session, grouped_booking_id: str) -> list[Booking]:
    """Every row of a group, by device name order of id."""
    return list(
        session.scalars(
            select(Booking)
            .where(Booking.grouped_booking_id == grouped_booking_id)
            .order_by(Booking.start_time, Booking.device_id, Booking.id)
        )
    )


def rows_by_ids(session: Session, ids: Iterable[int]) -> list[Booking]:
    """Rows by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return list(session.scalars(select(Booking).where(Booking.id.in_(wanted)).order_by(Booking.id)))


def rows_of_groups(session: Session, gids: Iterable[str]) -> list[Booking]:
    """Every row of some groups."""
    wanted = sorted(set(gids))
    if not wanted:
        return []
    return list(
        session.scalars(
            select(Booking)
            .where(Booking.grouped_booking_id.in_(wanted))
            .order_by(Booking.grouped_booking_id, Booking.start_time, Booking.id)
        )
    )


def rows_with_names(session: Session, gids: Iterable[str]) -> list[AnyRow]:
    """Rows of some groups with device name and owner's username, in one query."""
    wanted = sorted(set(gids))
    if not wanted:
        return []
    return list(
        session.execute(
            select(Booking, Device.name, User.username)
            .join(Device, Device.id == Booking.device_id)
            .join(User, User.id == Booking.user_id)
            .where(Booking.grouped_booking_id.in_(wanted))
            .order_by(Booking.start_time, Device.name, Booking.id)
        )
    )


def collaborator_ids(session: Session, grouped_booking_id: str) -> set[int]:
    """User ids of a group's collaborators."""
    return set(
        session.scalars(
            select(BookingCollaborator.user_id).where(
                BookingCollaborator.grouped_booking_id == grouped_booking_id
            )
        )
    )


def collaborator_names(session: Session, gids: Iterable[str]) -> dict[str, list[str]]:
    """Collaborators' usernames per group, for some groups, in one query."""
    wanted = sorted(set(gids))
    out: dict[str, list[str]] = {g: [] for g in wanted}
    if not wanted:
        return out
    rows = session.execute(
        select(BookingCollaborator.grouped_booking_id, User.username)
        .join(User, User.id == BookingCollaborator.user_id)
        .where(BookingCollaborator.grouped_booking_id.in_(wanted))
        .order_by(User.username)
    )
    for gid, username in rows:
        out[gid].append(username)
    return out


def collaborations(session: Session, user_id: int, gids: Iterable[str]) -> set[str]:
    """Which of some groups a user collaborates on."""
    wanted = sorted(set(gids))
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(BookingCollaborator.grouped_booking_id).where(
                BookingCollaborator.user_id == user_id,
                BookingCollaborator.grouped_booking_id.in_(wanted),
            )
        )
    )


def collaborations_in_window(
    session: Session, user_id: int, start: datetime, end: datetime
) -> set[str]:
    """The groups a user collaborates on that have a booking overlapping [start, end), in one
    query (bounded by the user's collaborations, not by how many bookings the window holds)."""
    return set(
        session.scalars(
            select(BookingCollaborator.grouped_booking_id)
            .join(Booking, Booking.grouped_booking_id == BookingCollaborator.grouped_booking_id)
            .where(
                BookingCollaborator.user_id == user_id,
                Booking.start_time < end,
                Booking.end_time > start,
            )
            .distinct()
        )
    )


def collaborator_rows(session: Session, grouped_booking_id: str) -> list[BookingCollaborator]:
    """A group's collaborator rows."""
    return list(
        session.scalars(
            select(BookingCollaborator).where(
                BookingCollaborator.grouped_booking_id == grouped_booking_id
            )
        )
    )


def group_device_counts(session: Session, gids: Iterable[str]) -> dict[str, int]:
    """How many distinct devices each group books."""
    wanted = sorted(set(gids))
    if not wanted:
        return {}
    rows = session.execute(
        select(Booking.grouped_booking_id, func.count(distinct(Booking.device_id)))
        .where(Booking.grouped_booking_id.in_(wanted))
        .group_by(Booking.grouped_booking_id)
    )
    return {gid: int(n) for gid, n in rows}


def people_of_groups(session: Session, gids: Iterable[str]) -> dict[str, list[int]]:
    """Owner and collaborators (user ids, owner first) of some groups."""
    wanted = sorted(set(gids))
    out: dict[str, list[int]] = {}
    if not wanted:
        return out
    for gid, user_id in session.execute(
        select(Booking.grouped_booking_id, Booking.user_id)
        .where(Booking.grouped_booking_id.in_(wanted))
        .distinct()
    ):
        out.setdefault(gid, [])
        if user_id not in out[gid]:
            out[gid].insert(0, user_id)
    for gid, user_id in session.execute(
        select(BookingCollaborator.grouped_booking_id, BookingCollaborator.user_id).where(
            BookingCollaborator.grouped_booking_id.in_(wanted)
        )
    ):
        people = out.setdefault(gid, [])
        if user_id not in people:
            people.append(user_id)
    return out


def device_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Device names by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return dict(session.execute(select(Device.id, Device.name).where(Device.id.in_(wanted))).all())


# -- lists ---------------------------------------------------------------------------------

SORTS = {
    "start": Booking.start_time,
    "end": Booking.end_time,
    "created": Booking.created_at,
    "status": Booking.status,
    "device": Device.name,
    "user": User.username,
}


def bookings_query(
    *,
    statuses: Sequence[str] | None = None,
    device_id: int | None = None,
    device_type_id: int | None = None,
    user_id: int | None = None,
    grouped_booking_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    conflicts_only: bool = False,
    sort: str = "-start",
) -> AnySelect:
    """Rows with device name and owner's username, filtered and sorted (admins' list, CSV)."""
    stmt = (
        select(Booking, Device.name, User.username)
        .join(Device, Device.id == Booking.device_id)
        .join(User, User.id == Booking.user_id)
    )
    if statuses:
        stmt = stmt.where(Booking.status.in_(list(statuses)))
    if device_id is not None:
        stmt = stmt.where(Booking.device_id == device_id)
    if device_type_id is not None:
        stmt = stmt.where(Device.device_type_id == device_type_id)
    if user_id is not None:
        stmt = stmt.where(Booking.user_id == user_id)
    if grouped_booking_id:
        stmt = stmt.where(Booking.grouped_booking_id == grouped_booking_id)
    if since is not None:
        stmt = stmt.where(Booking.end_time > since)
    if until is not None:
        stmt = stmt.where(Booking.start_time < until)
    if conflicts_only:
        stmt = stmt.where(
            or_(
                Booking.status == BookingStatus.CONFLICTING.value,
                and_(Booking.maintenance_conflict_id.is_not(None), Booking.status.in_(HOLDING)),
            )
        )
    column = SORTS[sort.lstrip("-")]
    order = column.desc() if sort.startswith("-") else column.asc()
    tiebreak = Booking.id.desc() if sort.startswith("-") else Booking.id.asc()
    return stmt.order_by(order, tiebreak)


def my_groups_query(user_id: int, *, scope: str, now: datetime) -> AnySelect:
    """Groups a user owns or collaborates on: upcoming (still live; split into ahead, not
    started yet, and active, under way), past, or all."""
    member = or_(
        Booking.user_id == user_id,
        Booking.grouped_booking_id.in_(
            select(BookingCollaborator.grouped_booking_id).where(
                BookingCollaborator.user_id == user_id
            )
        ),
    )
    live_ahead = func.max(
        case((and_(Booking.status.in_(LIVE), Booking.end_time > now), 1), else_=0)
    )
    first = func.min(Booking.start_time).label("first_start")
    stmt = (
        select(Booking.grouped_booking_id, first).where(member).group_by(Booking.grouped_booking_id)
    )
    if scope == "upcoming":
        # Only live rows still ahead count, which the (status, end_time) index finds however
        # long the user's history is.
        stmt = (
            select(Booking.grouped_booking_id, first)
            .where(member, Booking.status.in_(LIVE), Booking.end_time > now)
            .group_by(Booking.grouped_booking_id)
            .order_by(first.asc(), Booking.grouped_booking_id)
        )
    elif scope in ("ahead", "active"):
        # The split of "upcoming": groups whose remaining live rows all start later, and
        # groups with a live row under way now.
        first_live = func.min(Booking.start_time)
        stmt = (
            select(Booking.grouped_booking_id, first_live.label("first_start"))
            .where(member, Booking.status.in_(LIVE), Booking.end_time > now)
            .group_by(Booking.grouped_booking_id)
            .having(first_live > now if scope == "ahead" else first_live <= now)
            .order_by(first_live.asc(), Booking.grouped_booking_id)
        )
    elif scope == "past":
        stmt = stmt.having(live_ahead == 0).order_by(first.desc(), Booking.grouped_booking_id)
    else:
        stmt = stmt.order_by(first.desc(), Booking.grouped_booking_id)
    return stmt


def pending_groups_query() -> AnySelect:
    """Groups with rows waiting for approval, oldest request first."""
    return (
        select(Booking.grouped_booking_id, func.min(Booking.created_at).label("requested"))
        .where(Booking.status == BookingStatus.PENDING.value)
        .group_by(Booking.grouped_booking_id)
        .order_by(func.min(Booking.created_at), Booking.grouped_booking_id)
    )


def pending_rows(session: Session, gids: Iterable[str]) -> list[AnyRow]:
    """The pending rows of some groups with the owner's username."""
    wanted = sorted(set(gids))
    if not wanted:
        return []
    return list(
        session.execute(
            select(Booking, User.username)
            .join(User, User.id == Booking.user_id)
            .where(
                Booking.grouped_booking_id.in_(wanted),
                Booking.status == BookingStatus.PENDING.value,
            )
            .order_by(Booking.id)
        )
    )


# -- availability and timeline ------------------------------------------------------------


def devices_query(
    *,
    device_ids: Sequence[int] | None = None,
    device_type_id: int | None = None,
    site_id: int | None = None,
    bookable_only: bool = False,
) -> AnySelect:
    """Devices (not retired) with their type's schedulability, by name."""
    stmt = (
        select(
            Device.id,
            Device.name,
            Device.device_type_id,
            Device.status,
            DeviceType.is_schedulable,
        )
        .join(DeviceType, DeviceType.id == Device.device_type_id)
        .where(Device.status != "retired")
        .order_by(Device.name, Device.id)
    )
    if device_ids:
        stmt = stmt.where(Device.id.in_(list(device_ids)))
    if device_type_id is not None:
        stmt = stmt.where(Device.device_type_id == device_type_id)
    if site_id is not None:
        stmt = stmt.where(Device.site_id == site_id)
    if bookable_only:
        stmt = stmt.where(DeviceType.is_schedulable.is_(True), Device.status.not_in(NOT_BOOKABLE))
    return stmt


def devices(session: Session, **filters: Any) -> list[AnyRow]:
    """Every device matching `devices_query` filters, as plain tuples."""
    return list(session.execute(devices_query(**filters)))


def busy_device_ids(session: Session, start: datetime, end: datetime) -> set[int]:
    """Devices held by a booking or a maintenance window somewhere in [start, end)."""
    # No DISTINCT: it makes SQLite walk (device_id, ...) in order over all history; live rows
    # starting before the window's end are few, so the set is made here.
    booked = select(Booking.device_id).where(
        Booking.status.in_(HOLDING),
        Booking.start_time < end,
        unindexed(Booking.end_time) > start,
    )
    serviced = select(MaintenanceWindow.device_id).where(
        MaintenanceWindow.cancelled_at.is_(None),
        MaintenanceWindow.start_time < end,
        MaintenanceWindow.end_time > start,
    )
    return set(session.scalars(booked)) | set(session.scalars(serviced))


def window_bookings(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    device_id: int | None = None,
    statuses: Sequence[str] = SHOWN,
) -> tuple[list[tuple[Any, ...]], dict[int, str]]:
    """Rows overlapping [start, end) as plain tuples sorted by device and start
    (device_id, start_time, end_time, id, status, grouped_booking_id, user_id; the times
    naive UTC), and the usernames of their owners.

    Live rows and finished rows are asked for separately so each part uses its own index:
    live rows are few whatever the window, and finished rows only exist in the past, so the
    (status, end_time) range after the window's start is short for the windows people look
    at (SQLite and MariaDB are steered to it; PostgreSQL's planner sees it from statistics). Rows
    come through the connection, not the ORM: the grid asks for thousands at a time.
    """
    # Plain DateTime: the naive UTC values as stored; the caller attaches the zone once.
    columns = (
        Booking.device_id,
        type_coerce(Booking.start_time, DateTime()),
        type_coerce(Booking.end_time, DateTime()),
        Booking.id,
        Booking.status,
        Booking.grouped_booking_id,
        Booking.user_id,
    )
    live = [s for s in statuses if s in LIVE]
    done = [s for s in statuses if s not in LIVE]
    connection = session.connection()
    rows: list[tuple[Any, ...]] = []
    for part, wanted in (("live", live), ("done", done)):
        if not wanted or (part == "done" and start >= now):
            continue
        starts_before = Booking.start_time < end
        if part == "done" and device_id is None:
            starts_before = unindexed(Booking.start_time) < end
        stmt = select(*columns).where(
            Booking.status.in_(wanted), starts_before, Booking.end_time > start
        )
        if device_id is not None:
            stmt = stmt.where(Booking.device_id == device_id)
        elif part == "done":
            stmt = stmt.with_hint(Booking, "USE INDEX (ix_bookings_status_end)", "mysql")
        rows.extend(map(tuple, connection.execute(stmt).all()))
    rows.sort()
    return rows, usernames(session, {r[6] for r in rows})


def usernames(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Usernames by user id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return dict(session.execute(select(User.id, User.username).where(User.id.in_(wanted))).all())


def window_maintenance(
    session: Session, start: datetime, end: datetime, *, device_id: int | None = None
) -> list[AnyRow]:
    """Maintenance windows (not cancelled) overlapping [start, end), as plain tuples."""
    stmt = select(
        MaintenanceWindow.id,
        MaintenanceWindow.device_id,
        MaintenanceWindow.start_time,
        MaintenanceWindow.end_time,
        MaintenanceWindow.reason,
    ).where(
        MaintenanceWindow.cancelled_at.is_(None),
        MaintenanceWindow.start_time < end,
        MaintenanceWindow.end_time > start,
    )
    if device_id is not None:
        stmt = stmt.where(MaintenanceWindow.device_id == device_id)
    return sorted(session.execute(stmt), key=lambda r: (r.device_id, r.start_time, r.id))


# -- lifecycle -----------------------------------------------------------------------------


def due_rows(
    session: Session,
    *,
    statuses: Sequence[str],
    start_before: datetime | None = None,
    end_before: datetime | None = None,
    end_after: datetime | None = None,
    notice_unsent: bool = False,
    limit: int = 500,
) -> list[AnyRow]:
    """Rows the lifecycle job has to move on (id, group, device, owner, times)."""
    stmt = select(
        Booking.id,
        Booking.grouped_booking_id,
        Booking.device_id,
        Booking.user_id,
        Booking.start_time,
        Booking.end_time,
        Booking.status,
    ).where(Booking.status.in_(list(statuses)))
    if start_before is not None:
        stmt = stmt.where(Booking.start_time <= start_before)
    if end_before is not None:
        stmt = stmt.where(Booking.end_time <= end_before)
    if end_after is not None:
        stmt = stmt.where(Booking.end_time > end_after)
    if notice_unsent:
        stmt = stmt.where(Booking.end_notice_sent_at.is_(None))
    return list(session.execute(stmt.order_by(Booking.id).limit(limit)))


# -- favorites -----------------------------------------------------------------------------


def favorites_query(user_id: int) -> AnySelect:
    """A user's favorites by name."""
    return (
        select(BookingFavorite)
        .where(BookingFavorite.user_id == user_id)
        .order_by(BookingFavorite.name, BookingFavorite.id)
    )


def favorite_by_name(session: Session, user_id: int, name: str) -> BookingFavorite | None:
    """A user's favorite by name."""
    return session.scalar(
        select(BookingFavorite).where(
            BookingFavorite.user_id == user_id, BookingFavorite.name == name
        )
    )


# -- maintenance ---------------------------------------------------------------------------


def maintenance_query(
    *,
    device_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    include_cancelled: bool = False,
) -> AnySelect:
    """Maintenance windows with their device's name, by start time."""
    stmt = (
        select(MaintenanceWindow, Device.name)
        .join(Device, Device.id == MaintenanceWindow.device_id)
        .order_by(MaintenanceWindow.start_time, MaintenanceWindow.id)
    )
    if device_id is not None:
        stmt = stmt.where(MaintenanceWindow.device_id == device_id)
    if since is not None:
        stmt = stmt.where(MaintenanceWindow.end_time > since)
    if until is not None:
        stmt = stmt.where(MaintenanceWindow.start_time < until)
    if not include_cancelled:
        stmt = stmt.where(MaintenanceWindow.cancelled_at.is_(None))
    return stmt


def rows_marked_by(session: Session, window_id: int) -> list[Booking]:
    """Bookings marked as clashing with a maintenance window."""
    return list(
        session.scalars(select(Booking).where(Booking.maintenance_conflict_id == window_id))
    )


def rows_marked_by_windows(session: Session, window_ids: Iterable[int]) -> list[AnyRow]:
    """Holding bookings marked as clashing with any of these windows, with device and owner."""
    wanted = sorted(set(window_ids))
    if not wanted:
        return []
    return list(
        session.execute(
            select(Booking, Device.name, User.username)
            .join(Device, Device.id == Booking.device_id)
            .join(User, User.id == Booking.user_id)
            .where(Booking.maintenance_conflict_id.in_(wanted), Booking.status.in_(HOLDING))
            .order_by(Booking.start_time, Booking.id)
        )
    )


# -- calendar ------------------------------------------------------------------------------


def user_by_calendar_hash(session: Session, digest: str) -> User | None:
    """The active user whose calendar feed secret has this hash."""
    return session.scalar(
        select(User).where(User.calendar_token_hash == digest, User.is_active.is_(True))
    )


def calendar_rows(session: Session, user_id: int, *, since: datetime) -> list[AnyRow]:
    """A user's (owned or shared) rows ending after a time, with device names."""
    member = or_(
        Booking.user_id == user_id,
        Booking.grouped_booking_id.in_(
            select(BookingCollaborator.grouped_booking_id).where(
                BookingCollaborator.user_id == user_id
            )
        ),
    )
    return list(
        session.execute(
            select(Booking, Device.name, User.username)
            .join(Device, Device.id == Booking.device_id)
            .join(User, User.id == Booking.user_id)
            .where(member, Booking.status.in_(SHOWN), Booking.end_time > since)
            .order_by(Booking.start_time, Booking.id)
            .limit(5000)
        )
    )


# -- dashboard -----------------------------------------------------------------------------


def count_rows(session: Session, *conditions: Any) -> int:
    """Count booking rows matching conditions."""
    return int(session.scalar(select(func.count()).select_from(Booking).where(*conditions)) or 0)


def count_groups(session: Session, *conditions: Any) -> int:
    """Count booking groups having rows that match conditions."""
    return int(
        session.scalar(select(func.count(distinct(Booking.grouped_booking_id))).where(*conditions))
        or 0
    )


def devices_by_status(session: Session) -> dict[str, int]:
    """How many devices are in each status."""
    return {
        status: int(n)
        for status, n in session.execute(
            select(Device.status, func.count()).group_by(Device.status)
        )
    }


def used_intervals(session: Session, start: datetime, end: datetime) -> list[AnyRow]:
    """(device_id, start, end) of rows that used or hold a device within [start, end)."""
    return list(
        session.execute(
            select(Booking.device_id, Booking.start_time, Booking.end_time).where(
                Booking.status.in_(
                    [
                        BookingStatus.ACTIVE.value,
                        BookingStatus.COMPLETED.value,
                        BookingStatus.CONFIRMED.value,
                    ]
                ),
                Booking.end_time > start,
                Booking.start_time < end,
            )
        )
    )


def all_devices(session: Session) -> list[AnyRow]:
    """Id and name of every device that is not retired, by name."""
    return list(
        session.execute(
            select(Device.id, Device.name)
            .where(Device.status != "retired")
            .order_by(Device.name, Device.id)
        )
    )


def recent_audit(session: Session, limit: int = 20) -> list[AuditLog]:
    """The newest audit rows."""
    return list(session.scalars(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)))


def new_users_since(session: Session, since: datetime) -> int:
    """Users created after a time."""
    return int(
        session.scalar(select(func.count()).select_from(User).where(User.created_at >= since)) or 0
    )
