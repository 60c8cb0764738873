"""Queries of the topology domain: topologies and reviews, what they collide with, patches."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, func, or_, select, union
from sqlalchemy.orm import Session

from labkeeper.auth.models import User
from labkeeper.backups.models import Credential, CredentialTag
from labkeeper.booking.models import (
    HOLDING_STATUSES,
    Booking,
    BookingCollaborator,
    BookingStatus,
)
from labkeeper.inventory.models import Device, DeviceTag, DeviceType, MaintenanceWindow
from labkeeper.jobs.models import JobLog
from labkeeper.topology.models import CrossConnect, Topology, TopologyReview

HOLDING = [s.value for s in HOLDING_STATUSES]
ACTIVE = BookingStatus.ACTIVE.value
# Groups whose patches are (or are about to be) on the switch.
PATCHING = [BookingStatus.CONFIRMED.value, BookingStatus.ACTIVE.value]
LIVE = [*HOLDING, BookingStatus.CONFLICTING.value]
SWITCH_PLATFORM = "polatis"


# -- topologies ----------------------------------------------------------------------------


def topologies_query(
    *, user_id: int | None = None, q: str | None = None, review_status: str | None = None
) -> Select[Topology, str, TopologyReview]:
    """Topologies with their owner's name and review, most recently changed first."""
    stmt = (
        select(Topology, User.username, TopologyReview)
        .join(User, User.id == Topology.user_id)
        .outerjoin(TopologyReview, TopologyReview.topology_id == Topology.id)
        .order_by(Topology.updated_at.desc(), Topology.id.desc())
    )
    if user_id is not None:
        stmt = stmt.where(Topology.user_id == user_id)
    if q:
        stmt = stmt.where(func.lower(Topology.name).like(f"%{q.lower()}%"))
    if review_status == "none":
        stmt = stmt.where(TopologyReview.id.is_(None))
    elif review_status:
        stmt = stmt.where(TopologyReview.status == review_status)
    return stmt


def topology_full(
    session: Session, topology_id: int
) -> tuple[Topology, str, TopologyReview | None] | None:
    """A topology with its owner's name and review, in one query."""
    row = session.execute(
        select(Topology, User.username, TopologyReview)
        .join(User, User.id == Topology.user_id)
        .outerjoin(TopologyReview, TopologyReview.topology_id == Topology.id)
        .where(Topology.id == topology_id)
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def review_of(session: Session, topology_id: int) -> TopologyReview | None:
    """The review of a topology, if it was ever submitted."""
    return session.scalar(select(TopologyReview).where(TopologyReview.topology_id == topology_id))


def reviews_query(*, status: str | None = None) -> Select[TopologyReview, str, int, str]:
    """Reviews with their topology's name and owner, oldest submission first."""
    stmt = (
        select(TopologyReview, Topology.name, Topology.user_id, User.username)
        .join(Topology, Topology.id == TopologyReview.topology_id)
        .join(User, User.id == Topology.user_id)
        .order_by(TopologyReview.updated_at, TopologyReview.id)
    )
    if status:
        stmt = stmt.where(TopologyReview.status == status)
    return stmt


def open_reviews(session: Session, now: datetime, limit: int = 500) -> list[TopologyReview]:
    """Submitted or approved reviews whose window has not ended yet."""
    return list(
        session.scalars(
            select(TopologyReview)
            .where(
                TopologyReview.status.in_(["submitted", "approved"]),
                TopologyReview.window_end > now,
                TopologyReview.window_start.is_not(None),
            )
            .order_by(TopologyReview.id)
            .limit(limit)
        )
    )


def topologies_by_ids(session: Session, ids: Iterable[int]) -> dict[int, Topology]:
    """Topologies by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {t.id: t for t in session.scalars(select(Topology).where(Topology.id.in_(wanted)))}


def live_bookings_of(session: Session, topology_id: int) -> list[Row[Any]]:
    """Groups booked with a topology that are not over: (grouped_booking_id, status)."""
    return list(
        session.execute(
            select(Booking.grouped_booking_id, Booking.status)
            .where(Booking.topology_id == topology_id, Booking.status.in_(LIVE))
            .distinct()
        )
    )


# -- devices -------------------------------------------------------------------------------


def graph_devices(session: Session, ids: Iterable[int]) -> list[Row[Any]]:
    """What validation needs of some devices: name, status, schedulable, switch ports."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return list(
        session.execute(
            select(
                Device.id,
                Device.name,
                Device.status,
                DeviceType.is_schedulable,
                Device.switch_name,
                Device.switch_in_port,
                Device.switch_out_port,
            )
            .join(DeviceType, DeviceType.id == Device.device_type_id)
            .where(Device.id.in_(wanted))
        )
    )


def port_devices(
    session: Session, *, ids: Iterable[int] = (), switches: Iterable[str] = ()
) -> list[Row[Any]]:
    """Devices by id, and every device plugged into some switches, with their ports."""
    wanted, names = sorted(set(ids)), sorted(set(switches))
    if not wanted and not names:
        return []
    conditions = []
    if wanted:
        conditions.append(Device.id.in_(wanted))
    if names:
        conditions.append(Device.switch_name.in_(names))
    return list(
        session.execute(
            select(
                Device.id,
                Device.name,
                Device.switch_name,
                Device.switch_in_port,
                Device.switch_out_port,
            ).where(or_(*conditions))
        )
    )


def _platform() -> Any:
    return func.lower(func.coalesce(Device.platform, DeviceType.platform))


def switch_devices(session: Session, names: Collection[str] | None = None) -> list[Row[Any]]:
    """Devices that are optical switches (platform polatis, on the device or its type)."""
    stmt = (
        select(
            Device.id,
            Device.name,
            Device.mgmt_address,
            Device.ssh_port,
            Device.last_credential_id,
        )
        .join(DeviceType, DeviceType.id == Device.device_type_id)
        .where(_platform() == SWITCH_PLATFORM)
        .order_by(Device.name)
    )
    if names is not None:
        if not names:
            return []
        stmt = stmt.where(Device.name.in_(sorted(names)))
    return list(session.execute(stmt))


def switch_names(session: Session, names: Collection[str]) -> set[str]:
    """Which of these names are switch devices."""
    return {r.name for r in switch_devices(session, names)}


def switch_credentials(
    session: Session, device_ids: Collection[int], last_used: dict[int, int | None]
) -> dict[int, list[Credential]]:
    """Per switch device, the credentials to try: the one that last worked, then those
    carried by one of its tags, by priority (two queries)."""
    if not device_ids:
        return {}
    rows = session.execute(
        select(DeviceTag.device_id, Credential, CredentialTag.priority)
        .join(CredentialTag, CredentialTag.tag_id == DeviceTag.tag_id)
        .join(Credential, Credential.id == CredentialTag.credential_id)
        .where(DeviceTag.device_id.in_(sorted(device_ids)))
        .order_by(DeviceTag.device_id, CredentialTag.priority, Credential.id)
    )
    out: dict[int, list[Credential]] = defaultdict(list)
    for device_id, credential, _ in rows:
        if credential not in out[device_id]:
            out[device_id].append(credential)
    wanted = {i for i in last_used.values() if i is not None}
    if wanted:
        first = {
            c.id: c for c in session.scalars(select(Credential).where(Credential.id.in_(wanted)))
        }
        for device_id, credential_id in last_used.items():
            found = first.get(credential_id) if credential_id is not None else None
            if found is not None:
                out[device_id] = [found, *[c for c in out[device_id] if c.id != found.id]]
    return dict(out)


# -- what a window collides with -----------------------------------------------------------


def holding_overlaps(
    session: Session, device_ids: Collection[int], start: datetime, end: datetime
) -> list[Row[Any]]:
    """Pending, confirmed and active bookings of some devices that overlap a window."""
    if not device_ids:
        return []
    return list(
        session.execute(
            select(
                Booking.id,
                Booking.grouped_booking_id,
                Booking.device_id,
                Booking.user_id,
                Booking.topology_id,
                Booking.start_time,
                Booking.end_time,
                Booking.status,
                User.username,
            )
            .join(User, User.id == Booking.user_id)
            .where(
                Booking.device_id.in_(sorted(device_ids)),
                Booking.status.in_(HOLDING),
                Booking.start_time < end,
                Booking.end_time > start,
            )
            .order_by(Booking.device_id, Booking.start_time)
        )
    )


def maintenance_overlaps(
    session: Session, device_ids: Collection[int], start: datetime, end: datetime
) -> list[Row[Any]]:
    """Maintenance windows (not cancelled) of some devices that overlap a window."""
    if not device_ids:
        return []
    return list(
        session.execute(
            select(
                MaintenanceWindow.id,
                MaintenanceWindow.device_id,
                MaintenanceWindow.start_time,
                MaintenanceWindow.end_time,
                MaintenanceWindow.reason,
            )
            .where(
                MaintenanceWindow.device_id.in_(sorted(device_ids)),
                MaintenanceWindow.cancelled_at.is_(None),
                MaintenanceWindow.start_time < end,
                MaintenanceWindow.end_time > start,
            )
            .order_by(MaintenanceWindow.device_id, MaintenanceWindow.start_time)
        )
    )


def patching_groups(session: Session, start: datetime, end: datetime) -> list[Row[Any]]:
    """Confirmed or active groups overlapping a window: (grouped_booking_id, topology_id)."""
    return list(
        session.execute(
            select(Booking.grouped_booking_id, Booking.topology_id)
            .where(
                Booking.status.in_(PATCHING),
                Booking.start_time < end,
                Booking.end_time > start,
            )
            .distinct()
        )
    )


def wanted_patches_of_groups(session: Session, gids: Collection[str]) -> list[CrossConnect]:
    """Patches that some groups want on the switch."""
    if not gids:
        return []
    return list(
        session.scalars(
            select(CrossConnect).where(
                CrossConnect.grouped_booking_id.in_(sorted(gids)),
                CrossConnect.desired_state == "present",
            )
        )
    )


# -- bookings that provisioning follows ----------------------------------------------------


def active_rows(session: Session, now: datetime) -> list[Row[Any]]:
    """ACTIVE booking rows whose end has not come: group, device, topology and owner."""
    return list(
        session.execute(
            select(
                Booking.grouped_booking_id,
                Booking.device_id,
                Booking.topology_id,
                Booking.user_id,
            ).where(Booking.status == ACTIVE, Booking.end_time > now)
        )
    )


def group_rows(session: Session, grouped_booking_id: str) -> list[Booking]:
    """The rows of one booking group."""
    return list(
        session.scalars(
            select(Booking)
            .where(Booking.grouped_booking_id == grouped_booking_id)
            .order_by(Booking.id)
        )
    )


def groups_of_user(user_id: int) -> Any:
    """A subquery of the groups a user owns or collaborates on."""
    return union(
        select(Booking.grouped_booking_id).where(Booking.user_id == user_id),
        select(BookingCollaborator.grouped_booking_id).where(
            BookingCollaborator.user_id == user_id
        ),
    ).subquery()


# -- cross-connects ------------------------------------------------------------------------


def wanted_patches(session: Session) -> list[CrossConnect]:
    """Every patch labkeeper wants on a switch."""
    return list(
        session.scalars(
            select(CrossConnect)
            .where(CrossConnect.desired_state == "present")
            .order_by(CrossConnect.id)
        )
    )


def patch_keys(session: Session, gids: Collection[str]) -> set[tuple[str | None, str, int, int]]:
    """(group, switch, ingress, egress) of every patch row some groups have, in any state."""
    if not gids:
        return set()
    rows = session.execute(
        select(
            CrossConnect.grouped_booking_id,
            CrossConnect.switch_name,
            CrossConnect.ingress_port,
            CrossConnect.egress_port,
        ).where(CrossConnect.grouped_booking_id.in_(sorted(gids)))
    )
    return {(r[0], r[1], r[2], r[3]) for r in rows}


def live_patches(session: Session, switch_name: str | None = None) -> list[CrossConnect]:
    """Patches still of interest to a switch: wanted, or not yet seen gone."""
    stmt = (
        select(CrossConnect)
        .where(or_(CrossConnect.desired_state == "present", CrossConnect.actual_state != "absent"))
        .order_by(CrossConnect.id)
    )
    if switch_name is not None:
        stmt = stmt.where(CrossConnect.switch_name == switch_name)
    return list(session.scalars(stmt))


def patch_by_key(
    session: Session, grouped_booking_id: str, switch_name: str, ingress: int, egress: int
) -> CrossConnect | None:
    """The row of one patch of one group."""
    return session.scalar(
        select(CrossConnect).where(
            CrossConnect.grouped_booking_id == grouped_booking_id,
            CrossConnect.switch_name == switch_name,
            CrossConnect.ingress_port == ingress,
            CrossConnect.egress_port == egress,
        )
    )


def wanted_on_ports(
    session: Session, switch_name: str, ports: Collection[int]
) -> list[CrossConnect]:
    """Wanted patches of a switch that use any of these ports, as ingress or egress."""
    wanted = sorted(set(ports))
    return list(
        session.scalars(
            select(CrossConnect).where(
                CrossConnect.switch_name == switch_name,
                CrossConnect.desired_state == "present",
                or_(CrossConnect.ingress_port.in_(wanted), CrossConnect.egress_port.in_(wanted)),
            )
        )
    )


def patches_query(
    *,
    visible_to: int | None,
    grouped_booking_id: str | None = None,
    topology_id: int | None = None,
    switch_name: str | None = None,
    desired_state: str | None = None,
    failing: bool | None = None,
) -> Select[Any]:
    """Patch rows, filtered; `visible_to` limits them to that user's groups."""
    stmt = select(CrossConnect).order_by(CrossConnect.id.desc())
    if visible_to is not None:
        mine = groups_of_user(visible_to)
        stmt = stmt.where(CrossConnect.grouped_booking_id.in_(select(mine.c[0])))
    if grouped_booking_id is not None:
        stmt = stmt.where(CrossConnect.grouped_booking_id == grouped_booking_id)
    if topology_id is not None:
        stmt = stmt.where(CrossConnect.topology_id == topology_id)
    if switch_name is not None:
        stmt = stmt.where(CrossConnect.switch_name == switch_name)
    if desired_state is not None:
        stmt = stmt.where(CrossConnect.desired_state == desired_state)
    if failing is True:
        stmt = stmt.where(CrossConnect.last_error.is_not(None))
    elif failing is False:
        stmt = stmt.where(CrossConnect.last_error.is_(None))
    return stmt


def names_on_ports(
    session: Session, patches: Iterable[tuple[str, int, int]]
) -> tuple[dict[tuple[str, int], str], dict[tuple[str, int], str]]:
    """Device names behind patches: by (switch, ingress = output port) and (switch, egress =
    input port), in one query."""
    pairs = list(patches)
    if not pairs:
        return {}, {}
    outs = {(s, i) for s, i, _ in pairs}
    ins = {(s, e) for s, _, e in pairs}
    rows = session.execute(
        select(
            Device.name, Device.switch_name, Device.switch_in_port, Device.switch_out_port
        ).where(
            Device.switch_name.in_(sorted({s for s, _, _ in pairs})),
            or_(
                Device.switch_out_port.in_(sorted({i for _, i in outs})),
                Device.switch_in_port.in_(sorted({e for _, e in ins})),
            ),
        )
    )
    by_out: dict[tuple[str, int], str] = {}
    by_in: dict[tuple[str, int], str] = {}
    for r in rows:
        if (r.switch_name, r.switch_out_port) in outs:
            by_out[(r.switch_name, r.switch_out_port)] = r.name
        if (r.switch_name, r.switch_in_port) in ins:
            by_in[(r.switch_name, r.switch_in_port)] = r.name
    return by_out, by_in


def is_collaborator(session: Session, grouped_booking_id: str, user_id: int) -> bool:
    """Whether a user collaborates on a group."""
    return (
        session.scalar(
            select(BookingCollaborator.id).where(
                and_(
                    BookingCollaborator.grouped_booking_id == grouped_booking_id,
                    BookingCollaborator.user_id == user_id,
                )
            )
        )
        is not None
    )


def queued_run_exists(session: Session, job_type: str) -> bool:
    """Whether a run of a task is queued and not started yet."""
    return (
        session.scalar(
            select(JobLog.id).where(JobLog.job_type == job_type, JobLog.status == "queued").limit(1)
        )
        is not None
    )


def any_with_topology(session: Session, gids: Iterable[str]) -> bool:
    """Whether any of these booking groups was booked with a topology."""
    return (
        session.scalar(
            select(Booking.id)
            .where(Booking.grouped_booking_id.in_(sorted(gids)), Booking.topology_id.is_not(None))
            .limit(1)
        )
        is not None
    )


def patches_due(session: Session, now: datetime) -> bool:
    """Whether a patch differs from what the switch has and may be tried now."""
    return (
        session.scalar(
            select(CrossConnect.id)
            .where(
                CrossConnect.desired_state != CrossConnect.actual_state,
                or_(CrossConnect.next_attempt_at.is_(None), CrossConnect.next_attempt_at <= now),
            )
            .limit(1)
        )
        is not None
    )


def patchable_devices(session: Session, limit: int = 1000) -> list[Row[Any]]:
    """Schedulable devices plugged into an optical switch (what a topology may hold), by name:
    id, name, status, switch name and ports."""
    return list(
        session.execute(
            select(
                Device.id,
                Device.name,
                Device.status,
                Device.switch_name,
                Device.switch_in_port,
                Device.switch_out_port,
            )
            .join(DeviceType, DeviceType.id == Device.device_type_id)
            .where(
                DeviceType.is_schedulable.is_(True),
                Device.switch_name.is_not(None),
                or_(Device.switch_in_port.is_not(None), Device.switch_out_port.is_not(None)),
            )
            .order_by(Device.name, Device.id)
            .limit(limit)
        )
    )
