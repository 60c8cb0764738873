"""Queries of the inventory domain (select(...) style); no writes here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, exists, func, or_, select
from sqlalchemy.orm import Session, aliased, contains_eager

from labkeeper.auth.models import User
from labkeeper.backups.models import Credential, CredentialTag
from labkeeper.booking.models import HOLDING_STATUSES, Booking
from labkeeper.core.db import read
from labkeeper.core.schemas import MAX_ID
from labkeeper.inventory.models import (
    Device,
    DeviceHealthSnapshot,
    DeviceHistory,
    DeviceOwnership,
    DeviceTag,
    DeviceType,
    MaintenanceWindow,
    Manufacturer,
    Site,
    Tag,
    TagRule,
)
from labkeeper.jobs.models import ScheduledJob, ScheduledJobTag

# IN lists are cut into chunks of this size (parameter limits of the drivers).
CHUNK = 500
T = TypeVar("T")
# A select of rows of any shape (entities with extra columns).
Rows = Select[*tuple[Any, ...]]


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ci(column: Any, value: str) -> Any:
    # Names compare without regard to case on every backend (MariaDB's collation already does).
    return func.lower(column) == value.lower()


def _like(column: Any, q: str) -> Any:
    return func.lower(column).contains(q.lower(), autoescape=True)


# -- sites, manufacturers, device types ---------------------------------------------------------


def site_by_name(session: Session, name: str) -> Site | None:
    """A site by name, ignoring case."""
    return session.scalar(select(Site).where(_ci(Site.name, name)))


def sites_query(*, q: str | None = None) -> Select[Any]:
    """Sites with their device counts, by name."""
    count = select(func.count()).where(Device.site_id == Site.id).correlate(Site).scalar_subquery()
    stmt = select(Site, count.label("device_count")).order_by(Site.name, Site.id)
    if q:
        stmt = stmt.where(_like(Site.name, q))
    return stmt


def manufacturer_by_name(session: Session, name: str) -> Manufacturer | None:
    """A manufacturer by name, ignoring case."""
    return session.scalar(select(Manufacturer).where(_ci(Manufacturer.name, name)))


def manufacturers_query(*, q: str | None = None) -> Select[Any]:
    """Manufacturers with their device type counts, by name."""
    count = (
        select(func.count())
        .where(DeviceType.manufacturer_id == Manufacturer.id)
        .correlate(Manufacturer)
        .scalar_subquery()
    )
    stmt = select(Manufacturer, count.label("device_type_count")).order_by(
        Manufacturer.name, Manufacturer.id
    )
    if q:
        stmt = stmt.where(_like(Manufacturer.name, q))
    return stmt


def device_type_by_name(session: Session, name: str) -> DeviceType | None:
    """A device type by name, ignoring case."""
    return session.scalar(select(DeviceType).where(_ci(DeviceType.name, name)))


def device_types_query(
    *, q: str | None = None, category: str | None = None, type_id: int | None = None
) -> Select[Any]:
    """Device types with their manufacturer's name and device count, by name."""
    count = (
        select(func.count())
        .where(Device.device_type_id == DeviceType.id)
        .correlate(DeviceType)
        .scalar_subquery()
    )
    stmt = (
        select(DeviceType, Manufacturer.name, count.label("device_count"))
        .outerjoin(Manufacturer, Manufacturer.id == DeviceType.manufacturer_id)
        .order_by(DeviceType.name, DeviceType.id)
    )
    if q:
        stmt = stmt.where(_like(DeviceType.name, q))
    if category:
        stmt = stmt.where(DeviceType.category == category)
    if type_id is not None:
        stmt = stmt.where(DeviceType.id == type_id)
    return stmt


def _placed(*, site_id: int | None, type_id: int | None) -> list[Any]:
    where = []
    if site_id is not None:
        where.append(Device.site_id == site_id)
    if type_id is not None:
        where.append(Device.device_type_id == type_id)
    return where


def device_names(
    session: Session, *, site_id: int | None = None, type_id: int | None = None, limit: int = 20
) -> list[str]:
    """Names of (some of) the devices at a site and/or of a type, for messages."""
    stmt = select(Device.name).where(*_placed(site_id=site_id, type_id=type_id))
    return list(session.scalars(stmt.order_by(Device.name).limit(limit)))


def count_devices(
    session: Session, *, site_id: int | None = None, type_id: int | None = None
) -> int:
    """How many devices are at a site and/or of a type."""
    stmt = select(func.count()).select_from(Device)
    return session.scalar(stmt.where(*_placed(site_id=site_id, type_id=type_id))) or 0


def device_ids(
    session: Session, *, site_id: int | None = None, type_id: int | None = None
) -> list[int]:
    """Ids of the devices at a site and/or of a type."""
    stmt = select(Device.id).where(*_placed(site_id=site_id, type_id=type_id))
    return list(session.scalars(stmt))


def type_names_of_manufacturer(session: Session, manufacturer_id: int) -> list[str]:
    """Names of the device types made by a manufacturer."""
    return list(
        session.scalars(
            select(DeviceType.name)
            .where(DeviceType.manufacturer_id == manufacturer_id)
            .order_by(DeviceType.name)
            .limit(20)
        )
    )


# -- devices -----------------------------------------------------------------------------------


# What a device's view shows, as plain columns: its own (named as the API names them), then
# its type's and site's (type_*, site_*). Lists read these rather than ORM objects.
DEVICE_OWN_COLUMNS = (
    Device.id,
    Device.name,
    Device.hostname,
    Device.mgmt_address,
    Device.platform,
    Device.ssh_port,
    Device.serial,
    Device.model,
    Device.status,
    Device.rack,
    Device.notes,
    Device.switch_name,
    Device.switch_in_port,
    Device.switch_out_port,
    Device.reachability,
    Device.last_seen_at,
    Device.last_latency_ms,
    Device.last_backup_at,
    Device.last_backup_status,
    Device.created_by,
    Device.created_at,
    Device.updated_at,
)
DEVICE_COLUMNS = (
    *DEVICE_OWN_COLUMNS,
    DeviceType.id.label("type_id"),
    DeviceType.name.label("type_name"),
    DeviceType.category.label("type_category"),
    DeviceType.is_schedulable.label("type_is_schedulable"),
    DeviceType.has_ports.label("type_has_ports"),
    Site.id.label("site_id"),
    Site.name.label("site_name"),
)


_DEVICES_PLAIN = (
    select(*DEVICE_COLUMNS)
    .join(DeviceType, DeviceType.id == Device.device_type_id)
    .outerjoin(Site, Site.id == Device.site_id)
)


def _devices_base(plain: bool = False) -> Any:
    if plain:
        return _DEVICES_PLAIN  # built once: 29 columns cost more to build than to read
    return (
        select(Device)
        .join(DeviceType, DeviceType.id == Device.device_type_id)
        .outerjoin(Site, Site.id == Device.site_id)
        .options(contains_eager(Device.device_type), contains_eager(Device.site))
    )


def device_full(session: Session, device_id: int) -> Device | None:
    """A device with its type and site loaded."""
    return session.scalars(_devices_base().where(Device.id == device_id)).unique().first()


def device_row(session: Session, device_id: int) -> Any:
    """A device's `DEVICE_COLUMNS`, or None."""
    return read(session, _DEVICES_PLAIN.where(Device.id == device_id)).first()


def device_by_name(session: Session, name: str) -> Device | None:
    """A device by name, ignoring case."""
    return session.scalar(select(Device).where(_ci(Device.name, name)))


SORTS = {
    "name": (Device.name,),
    "status": (Device.status, Device.name),
    "created_at": (Device.created_at,),
}


def devices_query(
    *,
    q: str | None = None,
    device_type: str | None = None,
    category: str | None = None,
    status: str | None = None,
    tags: Iterable[str] = (),
    site: str | None = None,
    owner: str | None = None,
    schedulable: bool | None = None,
    reachability: str | None = None,
    free_now: bool | None = None,
    held_now: str | None = None,
    now: datetime | None = None,
    sort: str = "name",
    plain: bool = False,
) -> Select[Any]:
    """Devices with type and site, filtered and sorted (one query per page whatever its size):
    ORM objects, or with `plain` rows of `DEVICE_COLUMNS`."""
    stmt = _devices_base(plain)
    if q:
        stmt = stmt.where(
            or_(
                _like(Device.name, q),
                _like(Device.hostname, q),
                _like(Device.mgmt_address, q),
                _like(Device.serial, q),
                _like(Device.model, q),
            )
        )
    if device_type:
        stmt = stmt.where(_ci(DeviceType.name, device_type))
    if category:
        stmt = stmt.where(DeviceType.category == category)
    if status:
        stmt = stmt.where(Device.status == status)
    for tag in tags:
        stmt = stmt.where(
            exists()
            .where(DeviceTag.device_id == Device.id, DeviceTag.tag_id == Tag.id, _ci(Tag.name, tag))
            .correlate(Device)
        )
    if site:
        stmt = stmt.where(_ci(Site.name, site))
    if owner:
        owned = (
            exists()
            .where(DeviceOwnership.device_id == Device.id, DeviceOwnership.revoked_at.is_(None))
            .correlate(Device)
        )
        if owner.isdigit() and int(owner) <= MAX_ID:
            owned = owned.where(DeviceOwnership.owner_id == int(owner))
        else:
            owned = owned.where(DeviceOwnership.owner_id == User.id, _ci(User.username, owner))
        stmt = stmt.where(owned)
    if schedulable is not None:
        stmt = stmt.where(DeviceType.is_schedulable == schedulable)
    if reachability:
        stmt = stmt.where(Device.reachability == reachability)
    if (free_now is not None or held_now in ("booked", "maintenance")) and now is not None:
        booked = (
            exists()
            .where(
                Booking.device_id == Device.id,
                Booking.status.in_([s.value for s in HOLDING_STATUSES]),
                Booking.start_time <= now,
                Booking.end_time > now,
            )
            .correlate(Device)
        )
        serviced = (
            exists()
            .where(
                MaintenanceWindow.device_id == Device.id,
                MaintenanceWindow.cancelled_at.is_(None),
                MaintenanceWindow.start_time <= now,
                MaintenanceWindow.end_time > now,
            )
            .correlate(Device)
        )
        if free_now is not None:
            busy = or_(booked, serviced)
            stmt = stmt.where(~busy if free_now else busy)
        # held_now: what holds the device now; maintenance wins over a booking under it.
        if held_now == "maintenance":
            stmt = stmt.where(serviced)
        elif held_now == "booked":
            stmt = stmt.where(booked, ~serviced)
    descending = sort.startswith("-")
    columns = SORTS[sort.lstrip("-")]
    order = [c.desc() if descending else c.asc() for c in columns]
    return stmt.order_by(*order, Device.id.desc() if descending else Device.id.asc())


_TAGS_OF_DEVICES = (
    select(DeviceTag.device_id, DeviceTag.source, Tag.id, Tag.name, Tag.color)
    .join(Tag, Tag.id == DeviceTag.tag_id)
    .where(DeviceTag.device_id.in_(bindparam("ids", expanding=True)))
    .order_by(Tag.name)
)
_OWNERS_OF_DEVICES = (
    select(DeviceOwnership.device_id, User.id, User.username, DeviceOwnership.assigned_at)
    .join(User, User.id == DeviceOwnership.owner_id)
    .where(
        DeviceOwnership.device_id.in_(bindparam("ids", expanding=True)),
        DeviceOwnership.revoked_at.is_(None),
    )
    .order_by(DeviceOwnership.assigned_at, DeviceOwnership.id)
)


def tags_of_devices(
    session: Session, device_ids: Collection[int]
) -> dict[int, list[dict[str, Any]]]:
    """The tags of each device (with their source), in one query."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not device_ids:
        return out
    for device_id, source, tag_id, name, color in read(
        session, _TAGS_OF_DEVICES, {"ids": list(device_ids)}
    ):
        out[device_id].append({"id": tag_id, "name": name, "color": color, "source": source})
    return out


def owners_of_devices(
    session: Session, device_ids: Collection[int]
) -> dict[int, list[dict[str, Any]]]:
    """The current owners of each device, in one query."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not device_ids:
        return out
    for device_id, user_id, username, assigned_at in read(
        session, _OWNERS_OF_DEVICES, {"ids": list(device_ids)}
    ):
        out[device_id].append(
            {"user_id": user_id, "username": username, "assigned_at": assigned_at}
        )
    return out


def devices_on_ports(
    session: Session, switch_name: str, ports: Collection[int], *, exclude_id: int | None
) -> list[Device]:
    """Other devices plugged into any of these ports of a switch (as input or output)."""
    stmt = select(Device).where(
        _ci(Device.switch_name, switch_name),
        or_(Device.switch_in_port.in_(list(ports)), Device.switch_out_port.in_(list(ports))),
    )
    if exclude_id is not None:
        stmt = stmt.where(Device.id != exclude_id)
    return list(session.scalars(stmt.order_by(Device.name)))


def upcoming_holding_bookings(session: Session, device_id: int, now: datetime) -> list[Booking]:
    """Bookings that hold a device now or later (pending, confirmed, active)."""
    return list(
        session.scalars(
            select(Booking)
            .where(
                Booking.device_id == device_id,
                Booking.status.in_([s.value for s in HOLDING_STATUSES]),
                Booking.end_time > now,
            )
            .order_by(Booking.start_time, Booking.id)
        )
    )


def history_query(device_id: int) -> Select[Any]:
    """A device's field-level history with who changed it, newest first."""
    stmt: Rows = (
        select(DeviceHistory, User.username)
        .outerjoin(User, User.id == DeviceHistory.changed_by)
        .where(DeviceHistory.device_id == device_id)
        .order_by(DeviceHistory.changed_at.desc(), DeviceHistory.id.desc())
    )
    return stmt


def health_query(
    device_id: int, *, since: datetime | None = None, until: datetime | None = None
) -> Select[Any]:
    """A device's health snapshots, newest first."""
    stmt = select(DeviceHealthSnapshot).where(DeviceHealthSnapshot.device_id == device_id)
    if since is not None:
        stmt = stmt.where(DeviceHealthSnapshot.created_at >= since)
    if until is not None:
        stmt = stmt.where(DeviceHealthSnapshot.created_at < until)
    return stmt.order_by(DeviceHealthSnapshot.created_at.desc(), DeviceHealthSnapshot.id.desc())


def health_targets(
    session: Session, device_ids: Collection[int] | None = None
) -> list[tuple[int, str, int, str]]:
    """(id, address, port, status) of every device with a management address."""
    stmt = select(Device.id, Device.mgmt_address, Device.ssh_port, Device.status).where(
        Device.mgmt_address.is_not(None)
    )
    if device_ids is not None:
        stmt = stmt.where(Device.id.in_(list(device_ids)))
    return [(r[0], r[1] or "", r[2], r[3]) for r in session.execute(stmt.order_by(Device.id))]


def ids_with_status(session: Session, device_ids: Sequence[int], status: str) -> list[int]:
    """Which of these devices have a status now."""
    found: list[int] = []
    for part in chunks(device_ids):
        found.extend(
            session.scalars(select(Device.id).where(Device.id.in_(part), Device.status == status))
        )
    return found


# -- ownership ---------------------------------------------------------------------------------


def current_ownership(session: Session, device_id: int, user_id: int) -> DeviceOwnership | None:
    """The live ownership of a device by a user."""
    return session.scalar(
        select(DeviceOwnership).where(
            DeviceOwnership.device_id == device_id,
            DeviceOwnership.owner_id == user_id,
            DeviceOwnership.revoked_at.is_(None),
        )
    )


def ownership_query(device_id: int, *, include_revoked: bool = False) -> Select[Any]:
    """A device's ownerships with the owner's username, newest first."""
    owner = aliased(User)
    stmt: Rows = (
        select(DeviceOwnership, owner.username)
        .join(owner, owner.id == DeviceOwnership.owner_id)
        .where(DeviceOwnership.device_id == device_id)
        .order_by(DeviceOwnership.assigned_at.desc(), DeviceOwnership.id.desc())
    )
    if not include_revoked:
        stmt = stmt.where(DeviceOwnership.revoked_at.is_(None))
    return stmt


# -- tags --------------------------------------------------------------------------------------


def tag_by_name(session: Session, name: str) -> Tag | None:
    """A tag by name, ignoring case."""
    return session.scalar(select(Tag).where(_ci(Tag.name, name)))


def tags_by_names(session: Session, names: Collection[str]) -> dict[str, Tag]:
    """Tags by name, keyed by lower-case name."""
    if not names:
        return {}
    lowered = sorted({n.lower() for n in names})
    rows = session.scalars(select(Tag).where(func.lower(Tag.name).in_(lowered)))
    return {t.name.lower(): t for t in rows}


def tags_query(*, q: str | None = None, tag_id: int | None = None) -> Select[Any]:
    """Tags with how many devices carry them and how many rules apply them, by name."""
    devices = (
        select(func.count()).where(DeviceTag.tag_id == Tag.id).correlate(Tag).scalar_subquery()
    )
    rules = select(func.count()).where(TagRule.tag_id == Tag.id).correlate(Tag).scalar_subquery()
    stmt = select(Tag, devices.label("device_count"), rules.label("rule_count")).order_by(
        Tag.name, Tag.id
    )
    if q:
        stmt = stmt.where(_like(Tag.name, q))
    if tag_id is not None:
        stmt = stmt.where(Tag.id == tag_id)
    return stmt


def device_tag_rows(
    session: Session,
    *,
    device_ids: Collection[int] | None = None,
    tag_ids: Collection[int] | None = None,
) -> list[DeviceTag]:
    """device_tags rows, optionally limited to some devices and/or tags."""
    stmt = select(DeviceTag)
    if device_ids is not None:
        stmt = stmt.where(DeviceTag.device_id.in_(list(device_ids)))
    if tag_ids is not None:
        stmt = stmt.where(DeviceTag.tag_id.in_(list(tag_ids)))
    return list(session.scalars(stmt))


def tag_users(session: Session, tag_id: int) -> dict[str, list[str]]:
    """Credentials and scheduled jobs that select devices by a tag."""
    credentials = session.scalars(
        select(Credential.name)
        .join(CredentialTag, CredentialTag.credential_id == Credential.id)
        .where(CredentialTag.tag_id == tag_id)
        .order_by(Credential.name)
    )
    jobs = session.scalars(
        select(ScheduledJob.name)
        .join(ScheduledJobTag, ScheduledJobTag.scheduled_job_id == ScheduledJob.id)
        .where(ScheduledJobTag.tag_id == tag_id)
        .order_by(ScheduledJob.name)
    )
    return {"credentials": list(credentials), "scheduled_jobs": list(jobs)}


# -- tag rules ---------------------------------------------------------------------------------


def rules_query(*, tag_id: int | None = None, is_active: bool | None = None) -> Select[Any]:
    """Tag rules with their tag's name, by tag then name."""
    stmt: Rows = (
        select(TagRule, Tag.name)
        .join(Tag, Tag.id == TagRule.tag_id)
        .order_by(Tag.name, TagRule.name, TagRule.id)
    )
    if tag_id is not None:
        stmt = stmt.where(TagRule.tag_id == tag_id)
    if is_active is not None:
        stmt = stmt.where(TagRule.is_active == is_active)
    return stmt


def rule_with_tag(session: Session, rule_id: int) -> tuple[TagRule, str] | None:
    """A rule and its tag's name."""
    row = session.execute(rules_query().where(TagRule.id == rule_id)).first()
    return None if row is None else (row[0], row[1])


def active_rules(session: Session, *, tag_ids: Collection[int] | None = None) -> list[TagRule]:
    """Active rules, optionally only those of some tags."""
    stmt = select(TagRule).where(TagRule.is_active.is_(True))
    if tag_ids is not None:
        stmt = stmt.where(TagRule.tag_id.in_(list(tag_ids)))
    return list(session.scalars(stmt.order_by(TagRule.id)))


RULE_COLUMNS = (
    Device.id,
    Device.name,
    Device.hostname,
    Device.mgmt_address,
    Device.platform,
    Device.model,
    Device.serial,
    Device.status,
    Device.notes,
    DeviceType.name.label("device_type"),
    Site.name.label("site"),
)


def rule_values(
    session: Session, device_ids: Collection[int] | None = None
) -> list[dict[str, Any]]:
    """The fields rules look at, for all devices (or some), in one query."""
    stmt = (
        select(*RULE_COLUMNS)
        .join(DeviceType, DeviceType.id == Device.device_type_id)
        .outerjoin(Site, Site.id == Device.site_id)
        .order_by(Device.name, Device.id)
    )
    if device_ids is not None:
        stmt = stmt.where(Device.id.in_(list(device_ids)))
    return [dict(row._mapping) for row in session.execute(stmt)]
