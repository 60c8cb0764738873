"""Inventory rules: sites, manufacturers, device types, devices, tags, tag rules, ownership, health.

Names (of devices, types, sites, manufacturers, tags) are unique without regard to case, the
same on every backend. Every change made through the API writes one audit row; device fields
changed by PATCH, by tag changes and by health checks also write `device_history` rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, update
from sqlalchemy.orm import Session

from labkeeper.auth import repository as users
from labkeeper.core import audit
from labkeeper.core.audit import Actor
from labkeeper.core.errors import AlreadyExists, Conflict, Invalid, NotFound, not_found
from labkeeper.core.time import utcnow
from labkeeper.inventory import repository, rules
from labkeeper.inventory.models import (
    Device,
    DeviceHealthSnapshot,
    DeviceHistory,
    DeviceOwnership,
    DeviceTag,
    DeviceType,
    Manufacturer,
    Site,
    Tag,
    TagRule,
)
from labkeeper.inventory.schemas import (
    DeviceCreate,
    DeviceTypeCreate,
    DeviceTypeUpdate,
    DeviceUpdate,
    ManufacturerCreate,
    ManufacturerUpdate,
    SiteCreate,
    SiteUpdate,
    TagCreate,
    TagRuleCreate,
    TagRuleUpdate,
    TagUpdate,
)

log = logging.getLogger(__name__)

MANUAL = "manual"
RULE = "rule"
# Device attributes whose changes are written to device_history, in display order.
TRACKED = (
    "name",
    "hostname",
    "mgmt_address",
    "platform",
    "ssh_port",
    "serial",
    "model",
    "status",
    "device_type",
    "site",
    "rack",
    "notes",
    "switch_name",
    "switch_in_port",
    "switch_out_port",
)
# Health checks move devices between these two only; other statuses are set by people.
UP_STATUS = "available"
DOWN_STATUS = "unavailable"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _taken(kind: str, name: str) -> AlreadyExists:
    return AlreadyExists(
        f"a {kind} called {name!r} exists already", details={"field": "name", "name": name}
    )


def _in_use(what: str, users_of: str, names: list[str], count: int) -> Conflict:
    shown = ", ".join(names) + (f" and {count - len(names)} more" if count > len(names) else "")
    return Conflict(
        f"{what} is still used by {count} {users_of}: {shown}; change those first",
        code="in_use",
        details={users_of.replace(" ", "_"): names, "count": count},
    )


# -- sites -------------------------------------------------------------------------------------


def get_site(session: Session, site_id: int) -> Site:
    """A site, or 404."""
    site = session.get(Site, site_id)
    if site is None:
        raise not_found("site", site_id)
    return site


def site_view(site: Site, device_count: int = 0) -> dict[str, Any]:
    """A site as the API shows it."""
    return {
        "id": site.id,
        "name": site.name,
        "description": site.description,
        "address": site.address,
        "created_at": site.created_at,
        "device_count": device_count,
    }


def site_detail(session: Session, site_id: int) -> dict[str, Any]:
    """A site with its device count."""
    site = get_site(session, site_id)
    return site_view(site, repository.count_devices(session, site_id=site.id))


def create_site(session: Session, *, data: SiteCreate, actor: Actor) -> Site:
    """Create a site; names are unique."""
    if repository.site_by_name(session, data.name) is not None:
        raise _taken("site", data.name)
    site = Site(**data.model_dump())
    session.add(site)
    session.flush()
    audit.record(session, actor, "sites.create", "site", site.id, payload=data.model_dump())
    return site


def update_site(session: Session, *, site_id: int, data: SiteUpdate, actor: Actor) -> Site:
    """Change a site; a rename re-applies tag rules to its devices (rules can match the site)."""
    site = get_site(session, site_id)
    changes = data.model_dump(exclude_unset=True)
    renamed = "name" in changes and changes["name"] != site.name
    if renamed:
        other = repository.site_by_name(session, changes["name"])
        if other is not None and other.id != site.id:
            raise _taken("site", changes["name"])
    for key, value in changes.items():
        setattr(site, key, value)
    session.flush()
    if renamed:
        apply_rules(session, device_ids=repository.device_ids(session, site_id=site.id))
    audit.record(session, actor, "sites.update", "site", site.id, payload=changes)
    return site


def delete_site(session: Session, *, site_id: int, actor: Actor) -> None:
    """Delete a site that no device is at (409 naming the devices otherwise)."""
    site = get_site(session, site_id)
    count = repository.count_devices(session, site_id=site.id)
    if count:
        names = repository.device_names(session, site_id=site.id)
        raise _in_use(f"site {site.name!r}", "devices", names, count)
    session.delete(site)
    session.flush()
    audit.record(session, actor, "sites.delete", "site", site_id, payload={"name": site.name})


# -- manufacturers -----------------------------------------------------------------------------


def get_manufacturer(session: Session, manufacturer_id: int) -> Manufacturer:
    """A manufacturer, or 404."""
    row = session.get(Manufacturer, manufacturer_id)
    if row is None:
        raise not_found("manufacturer", manufacturer_id)
    return row


def manufacturer_view(row: Manufacturer, device_type_count: int = 0) -> dict[str, Any]:
    """A manufacturer as the API shows it."""
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "created_at": row.created_at,
        "device_type_count": device_type_count,
    }


def create_manufacturer(
    session: Session, *, data: ManufacturerCreate, actor: Actor
) -> Manufacturer:
    """Create a manufacturer; names are unique."""
    if repository.manufacturer_by_name(session, data.name) is not None:
        raise _taken("manufacturer", data.name)
    row = Manufacturer(**data.model_dump())
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "manufacturers.create", "manufacturer", row.id, payload=data.model_dump()
    )
    return row


def update_manufacturer(
    session: Session, *, manufacturer_id: int, data: ManufacturerUpdate, actor: Actor
) -> Manufacturer:
    """Change a manufacturer's name or description."""
    row = get_manufacturer(session, manufacturer_id)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes:
        other = repository.manufacturer_by_name(session, changes["name"])
        if other is not None and other.id != row.id:
            raise _taken("manufacturer", changes["name"])
    for key, value in changes.items():
        setattr(row, key, value)
    session.flush()
    audit.record(session, actor, "manufacturers.update", "manufacturer", row.id, payload=changes)
    return row


def delete_manufacturer(session: Session, *, manufacturer_id: int, actor: Actor) -> None:
    """Delete a manufacturer no device type refers to (409 naming the types otherwise)."""
    row = get_manufacturer(session, manufacturer_id)
    names = repository.type_names_of_manufacturer(session, row.id)
    if names:
        raise _in_use(f"manufacturer {row.name!r}", "device types", names, len(names))
    session.delete(row)
    session.flush()
    audit.record(
        session,
        actor,
        "manufacturers.delete",
        "manufacturer",
        manufacturer_id,
        payload={"name": row.name},
    )


# -- device types ------------------------------------------------------------------------------


def get_device_type(session: Session, type_id: int) -> DeviceType:
    """A device type, or 404."""
    row = session.get(DeviceType, type_id)
    if row is None:
        raise not_found("device type", type_id)
    return row


def device_type_view(
    row: DeviceType, manufacturer: str | None, device_count: int = 0
) -> dict[str, Any]:
    """A device type as the API shows it."""
    return {
        "id": row.id,
        "name": row.name,
        "category": row.category,
        "is_schedulable": row.is_schedulable,
        "has_ports": row.has_ports,
        "manufacturer_id": row.manufacturer_id,
        "manufacturer": manufacturer,
        "platform": row.platform,
        "config_command": row.config_command,
        "description": row.description,
        "created_at": row.created_at,
        "device_count": device_count,
    }


def device_type_detail(session: Session, type_id: int) -> dict[str, Any]:
    """A device type with its manufacturer's name and device count."""
    row = session.execute(repository.device_types_query(type_id=type_id)).first()
    if row is None:
        raise not_found("device type", type_id)
    return device_type_view(row[0], row[1], row[2])


def _manufacturer_id(session: Session, name: str | None) -> int | None:
    if name is None:
        return None
    found = repository.manufacturer_by_name(session, name)
    if found is None:
        raise Invalid(f"there is no manufacturer called {name!r}", field="manufacturer")
    return found.id


def create_device_type(session: Session, *, data: DeviceTypeCreate, actor: Actor) -> DeviceType:
    """Create a device type; names are unique, the manufacturer (by name) must exist."""
    if repository.device_type_by_name(session, data.name) is not None:
        raise _taken("device type", data.name)
    values = data.model_dump(exclude={"manufacturer"})
    row = DeviceType(**values, manufacturer_id=_manufacturer_id(session, data.manufacturer))
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "device_types.create", "device_type", row.id, payload=data.model_dump()
    )
    return row


def update_device_type(
    session: Session, *, type_id: int, data: DeviceTypeUpdate, actor: Actor
) -> DeviceType:
    """Change a device type; a rename re-applies tag rules to its devices."""
    row = get_device_type(session, type_id)
    changes = data.model_dump(exclude_unset=True)
    renamed = "name" in changes and changes["name"] != row.name
    if renamed:
        other = repository.device_type_by_name(session, changes["name"])
        if other is not None and other.id != row.id:
            raise _taken("device type", changes["name"])
    if "manufacturer" in changes:
        row.manufacturer_id = _manufacturer_id(session, changes.pop("manufacturer"))
    for key, value in changes.items():
        setattr(row, key, value)
    session.flush()
    if renamed:
        apply_rules(
            session,
            device_ids=repository.device_ids(session, type_id=row.id),
        )
    audit.record(
        session,
        actor,
        "device_types.update",
        "device_type",
        row.id,
        payload=data.model_dump(exclude_unset=True),
    )
    return row


def delete_device_type(session: Session, *, type_id: int, actor: Actor) -> None:
    """Delete a device type no device has (409 naming the devices otherwise)."""
    row = get_device_type(session, type_id)
    count = repository.count_devices(session, type_id=row.id)
    if count:
        names = repository.device_names(session, type_id=row.id)
        raise _in_use(f"device type {row.name!r}", "devices", names, count)
    session.delete(row)
    session.flush()
    audit.record(
        session, actor, "device_types.delete", "device_type", type_id, payload={"name": row.name}
    )


# -- devices -----------------------------------------------------------------------------------


def get_device(session: Session, device_id: int) -> Device:
    """A device with its type and site loaded, or 404."""
    device = repository.device_full(session, device_id)
    if device is None:
        raise not_found("device", device_id)
    return device


def _view(row: Any, tags: list[dict[str, Any]], owners: list[dict[str, Any]]) -> dict[str, Any]:
    view = dict(zip(row._fields[:_OWN_COLUMNS], row[:_OWN_COLUMNS], strict=True))
    view["device_type"] = {
        "id": row.type_id,
        "name": row.type_name,
        "category": row.type_category,
        "is_schedulable": row.type_is_schedulable,
        "has_ports": row.type_has_ports,
    }
    view["site"] = None if row.site_id is None else {"id": row.site_id, "name": row.site_name}
    view["tags"] = tags
    view["owners"] = owners
    return view


_OWN_COLUMNS = len(repository.DEVICE_OWN_COLUMNS)


def device_views(session: Session, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of `repository.devices_query(plain=True)` as the API shows devices, with tags and
    owners: two more queries for any number."""
    ids = [r.id for r in rows]
    tags = repository.tags_of_devices(session, ids)
    owners = repository.owners_of_devices(session, ids)
    return [_view(r, tags.get(r.id, []), owners.get(r.id, [])) for r in rows]


def device_detail(session: Session, device_id: int) -> dict[str, Any]:
    """One device with type, site, tags and current owners."""
    row = repository.device_row(session, device_id)
    if row is None:
        raise not_found("device", device_id)
    return device_views(session, [row])[0]


def _device_type(session: Session, name: str) -> DeviceType:
    found = repository.device_type_by_name(session, name)
    if found is None:
        raise Invalid(f"there is no device type called {name!r}", field="device_type")
    return found


def _site(session: Session, name: str | None) -> Site | None:
    if name is None:
        return None
    found = repository.site_by_name(session, name)
    if found is None:
        raise Invalid(f"there is no site called {name!r}", field="site")
    return found


def _tags(session: Session, names: Iterable[str], *, field: str = "tags") -> list[Tag]:
    wanted: dict[str, str] = {}
    for name in names:
        wanted.setdefault(name.lower(), name)
    found = repository.tags_by_names(session, list(wanted))
    missing = [name for key, name in wanted.items() if key not in found]
    if missing:
        raise Invalid(
            "unknown tag"
            + ("s" if len(missing) > 1 else "")
            + ": "
            + ", ".join(missing)
            + "; create tags with POST /api/v1/tags first",
            field=field,
            details={"missing": missing},
        )
    return [found[key] for key in wanted]


def _check_ports(
    session: Session,
    *,
    switch_name: str | None,
    in_port: int | None,
    out_port: int | None,
    exclude_id: int | None,
) -> None:
    ports = [p for p in (in_port, out_port) if p is not None]
    if not ports:
        return
    if not switch_name:
        raise Invalid("switch ports need the switch_name they belong to", field="switch_name")
    taken = repository.devices_on_ports(session, switch_name, ports, exclude_id=exclude_id)
    if taken:
        other = taken[0]
        port = next(p for p in ports if p in (other.switch_in_port, other.switch_out_port))
        raise Conflict(
            f"port {port} of switch {switch_name!r} is already used by device {other.name!r}",
            code="port_in_use",
            details={
                "device": other.name,
                "device_id": other.id,
                "switch_name": switch_name,
                "port": port,
            },
        )


def _snapshot(device: Device) -> dict[str, Any]:
    values = {
        name: getattr(device, name) for name in TRACKED if name not in ("device_type", "site")
    }
    values["device_type"] = device.device_type.name
    values["site"] = device.site.name if device.site is not None else None
    return values


def _tag_names(session: Session, device_id: int) -> list[str]:
    return [t["name"] for t in repository.tags_of_devices(session, [device_id]).get(device_id, [])]


def create_device(session: Session, *, data: DeviceCreate, actor: Actor) -> Device:
    """Create a device (type, site and tags by name); tag rules are applied at once."""
    if repository.device_by_name(session, data.name) is not None:
        raise _taken("device", data.name)
    dtype = _device_type(session, data.device_type)
    site = _site(session, data.site)
    tags = _tags(session, data.tags)
    _check_ports(
        session,
        switch_name=data.switch_name,
        in_port=data.switch_in_port,
        out_port=data.switch_out_port,
        exclude_id=None,
    )
    values = data.model_dump(exclude={"device_type", "site", "tags"})
    device = Device(**values, device_type=dtype, site=site, created_by=actor.user_id)
    session.add(device)
    session.flush()
    for tag in tags:
        session.add(DeviceTag(device_id=device.id, tag_id=tag.id, source=MANUAL))
    session.flush()
    applied = apply_rules(session, device_ids=[device.id])
    audit.record(
        session,
        actor,
        "devices.create",
        "device",
        device.id,
        payload={**data.model_dump(), "rule_tags": applied["tagged"]},
    )
    return device


def _history(
    session: Session,
    device_id: int,
    changes: list[tuple[str, Any, Any]],
    *,
    changed_by: int | None,
    now: datetime,
) -> None:
    for field, old, new in changes:
        session.add(
            DeviceHistory(
                device_id=device_id,
                field=field,
                old_value=_text(old),
                new_value=_text(new),
                changed_by=changed_by,
                changed_at=now,
            )
        )


def update_device(session: Session, *, device_id: int, data: DeviceUpdate, actor: Actor) -> Device:
    """Change a device; each changed field gets a history row; tag rules are re-applied."""
    device = get_device(session, device_id)
    changes = data.model_dump(exclude_unset=True)
    before = _snapshot(device)
    if "name" in changes:
        other = repository.device_by_name(session, changes["name"])
        if other is not None and other.id != device.id:
            raise _taken("device", changes["name"])
    if "device_type" in changes:
        device.device_type = _device_type(session, changes.pop("device_type"))
    if "site" in changes:
        device.site = _site(session, changes.pop("site"))
    if {"switch_name", "switch_in_port", "switch_out_port"} & changes.keys():
        _check_ports(
            session,
            switch_name=changes.get("switch_name", device.switch_name),
            in_port=changes.get("switch_in_port", device.switch_in_port),
            out_port=changes.get("switch_out_port", device.switch_out_port),
            exclude_id=device.id,
        )
    for key, value in changes.items():
        setattr(device, key, value)
    session.flush()
    after = _snapshot(device)
    diffs = [(f, before[f], after[f]) for f in TRACKED if before[f] != after[f]]
    _history(session, device.id, diffs, changed_by=actor.user_id, now=utcnow())
    applied = apply_rules(session, device_ids=[device.id])
    session.flush()
    audit.record(
        session,
        actor,
        "devices.update",
        "device",
        device.id,
        payload={
            "name": device.name,
            "changes": {f: {"old": old, "new": new} for f, old, new in diffs},
            "rule_tags": applied,
        },
    )
    return device


def history_view(row: DeviceHistory, username: str | None) -> dict[str, Any]:
    """A history row with the username of who made the change (None: the system)."""
    return {
        "id": row.id,
        "device_id": row.device_id,
        "field": row.field,
        "old_value": row.old_value,
        "new_value": row.new_value,
        "changed_by": row.changed_by,
        "changed_by_username": username,
        "changed_at": row.changed_at,
    }


def delete_device(session: Session, *, device_id: int, actor: Actor) -> None:
    """Delete a device and everything that belongs to it; 409 while bookings still hold it."""
    device = get_device(session, device_id)
    held = repository.upcoming_holding_bookings(session, device.id, utcnow())
    if held:
        shown = ", ".join(
            f"#{b.id} ({b.start_time.isoformat(timespec='minutes')} to "
            f"{b.end_time.isoformat(timespec='minutes')}, {b.status})"
            for b in held[:10]
        )
        raise Conflict(
            f"device {device.name!r} has {len(held)} current or upcoming booking(s): {shown}; "
            "cancel or move them first",
            code="device_booked",
            details={
                "bookings": [
                    {
                        "booking_id": b.id,
                        "grouped_booking_id": b.grouped_booking_id,
                        "user_id": b.user_id,
                        "start": b.start_time.isoformat(),
                        "end": b.end_time.isoformat(),
                        "status": b.status,
                    }
                    for b in held
                ]
            },
        )
    name = device.name
    # The database cascades to bookings, history, tags, ownership, health, backups.
    session.execute(delete(Device).where(Device.id == device.id))
    session.flush()
    audit.record(session, actor, "devices.delete", "device", device_id, payload={"name": name})


# -- tags --------------------------------------------------------------------------------------


def get_tag(session: Session, tag_id: int) -> Tag:
    """A tag, or 404."""
    tag = session.get(Tag, tag_id)
    if tag is None:
        raise not_found("tag", tag_id)
    return tag


def tag_view(tag: Tag, device_count: int = 0, rule_count: int = 0) -> dict[str, Any]:
    """A tag as the API shows it."""
    return {
        "id": tag.id,
        "name": tag.name,
        "color": tag.color,
        "description": tag.description,
        "created_at": tag.created_at,
        "device_count": device_count,
        "rule_count": rule_count,
    }


def tag_detail(session: Session, tag_id: int) -> dict[str, Any]:
    """A tag with its device and rule counts."""
    row = session.execute(repository.tags_query(tag_id=tag_id)).first()
    if row is None:
        raise not_found("tag", tag_id)
    return tag_view(row[0], row[1], row[2])


def create_tag(session: Session, *, data: TagCreate, actor: Actor) -> Tag:
    """Create a tag; names are unique (ignoring case)."""
    if repository.tag_by_name(session, data.name) is not None:
        raise _taken("tag", data.name)
    tag = Tag(**data.model_dump())
    session.add(tag)
    session.flush()
    audit.record(session, actor, "tags.create", "tag", tag.id, payload=data.model_dump())
    return tag


def update_tag(session: Session, *, tag_id: int, data: TagUpdate, actor: Actor) -> Tag:
    """Rename a tag or change its color or description."""
    tag = get_tag(session, tag_id)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes:
        other = repository.tag_by_name(session, changes["name"])
        if other is not None and other.id != tag.id:
            raise _taken("tag", changes["name"])
    for key, value in changes.items():
        setattr(tag, key, value)
    session.flush()
    audit.record(session, actor, "tags.update", "tag", tag.id, payload=changes)
    return tag


def delete_tag(session: Session, *, tag_id: int, force: bool, actor: Actor) -> None:
    """Delete a tag (off every device, with its rules); credentials or jobs using it need force."""
    tag = get_tag(session, tag_id)
    used = repository.tag_users(session, tag.id)
    if not force and (used["credentials"] or used["scheduled_jobs"]):
        parts = [
            f"{kind.replace('_', ' ')} {', '.join(names)}" for kind, names in used.items() if names
        ]
        raise Conflict(
            f"tag {tag.name!r} selects devices for "
            + "; ".join(parts)
            + "; delete with force=true to remove it from them too",
            code="in_use",
            details=used,
        )
    name = tag.name
    session.execute(delete(Tag).where(Tag.id == tag.id))
    session.flush()
    audit.record(session, actor, "tags.delete", "tag", tag_id, payload={"name": name, **used})


def _tags_changed(
    session: Session, device: Device, before: list[str], actor: Actor, action: str, **extra: Any
) -> None:
    after = _tag_names(session, device.id)
    if sorted(before) != sorted(after):
        _history(
            session,
            device.id,
            [("tags", ", ".join(before) or None, ", ".join(after) or None)],
            changed_by=actor.user_id,
            now=utcnow(),
        )
    audit.record(
        session,
        actor,
        action,
        "device",
        device.id,
        payload={"name": device.name, "before": before, "after": after, **extra},
    )


def set_device_tags(session: Session, *, device_id: int, names: list[str], actor: Actor) -> Device:
    """Make these the device's manual tags; rule-given tags stay as the rules decide."""
    device = get_device(session, device_id)
    wanted = {t.id: t for t in _tags(session, names)}
    before = _tag_names(session, device.id)
    present: set[int] = set()
    for row in repository.device_tag_rows(session, device_ids=[device.id]):
        present.add(row.tag_id)
        if row.tag_id in wanted:
            row.source = MANUAL
        elif row.source == MANUAL:
            session.delete(row)
    for tag_id in wanted.keys() - present:
        session.add(DeviceTag(device_id=device.id, tag_id=tag_id, source=MANUAL))
    session.flush()
    apply_rules(session, device_ids=[device.id])
    _tags_changed(session, device, before, actor, "devices.set_tags", tags=names)
    return device


def add_device_tag(session: Session, *, device_id: int, name: str, actor: Actor) -> Device:
    """Give a device a tag by hand (a rule-given tag becomes manual)."""
    device = get_device(session, device_id)
    tag = _tags(session, [name], field="tag")[0]
    before = _tag_names(session, device.id)
    row = session.get(DeviceTag, (device.id, tag.id))
    if row is None:
        session.add(DeviceTag(device_id=device.id, tag_id=tag.id, source=MANUAL))
    else:
        row.source = MANUAL
    session.flush()
    _tags_changed(session, device, before, actor, "devices.add_tag", tag=tag.name)
    return device


def _matching_rules(session: Session, device_id: int, tag_id: int) -> list[TagRule]:
    values = repository.rule_values(session, [device_id])
    found = []
    for rule in repository.active_rules(session, tag_ids=[tag_id]):
        try:
            if values and rules.matches(rule.rule, values[0]):
                found.append(rule)
        except rules.RuleError:
            continue
    return found


def remove_device_tag(session: Session, *, device_id: int, tag_id: int, actor: Actor) -> Device:
    """Take a tag off a device; 409 when an active rule gives the device that tag."""
    device = get_device(session, device_id)
    tag = get_tag(session, tag_id)
    row = session.get(DeviceTag, (device.id, tag.id))
    if row is None:
        raise NotFound(
            f"device {device.name!r} does not carry the tag {tag.name!r}",
            details={"device_id": device.id, "tag_id": tag.id},
        )
    matching = _matching_rules(session, device.id, tag.id)
    if matching:
        raise Conflict(
            f"the tag {tag.name!r} is given to {device.name!r} by rule "
            + ", ".join(repr(r.name) for r in matching)
            + "; change or deactivate the rule instead",
            code="rule_tag",
            details={"rules": [{"id": r.id, "name": r.name} for r in matching]},
        )
    before = _tag_names(session, device.id)
    session.delete(row)
    session.flush()
    _tags_changed(session, device, before, actor, "devices.remove_tag", tag=tag.name)
    return device


# -- ownership ---------------------------------------------------------------------------------


def ownership_view(row: DeviceOwnership, username: str) -> dict[str, Any]:
    """An ownership row with the owner's username."""
    return {
        "id": row.id,
        "device_id": row.device_id,
        "owner_id": row.owner_id,
        "username": username,
        "assigned_by": row.assigned_by,
        "assigned_at": row.assigned_at,
        "revoked_at": row.revoked_at,
        "revoked_by": row.revoked_by,
    }


def assign_owner(
    session: Session, *, device_id: int, username: str, actor: Actor
) -> dict[str, Any]:
    """Make a user an owner of a device (a device may have several)."""
    device = get_device(session, device_id)
    user = users.user_by_username(session, username)
    if user is None:
        raise Invalid(f"there is no user called {username!r}", field="username")
    if not user.is_active:
        raise Invalid(f"the account {user.username!r} is deactivated", field="username")
    if repository.current_ownership(session, device.id, user.id) is not None:
        raise AlreadyExists(
            f"{user.username} already owns {device.name!r}", details={"field": "username"}
        )
    row = DeviceOwnership(
        device_id=device.id, owner_id=user.id, assigned_by=actor.user_id, assigned_at=utcnow()
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "devices.assign_owner",
        "device",
        device.id,
        payload={"name": device.name, "owner": user.username, "owner_id": user.id},
    )
    return ownership_view(row, user.username)


def revoke_owner(session: Session, *, device_id: int, user_id: int, actor: Actor) -> dict[str, Any]:
    """End a user's ownership of a device; the row stays as history."""
    device = get_device(session, device_id)
    row = repository.current_ownership(session, device.id, user_id)
    if row is None:
        raise NotFound(
            f"user {user_id} does not own {device.name!r}",
            details={"device_id": device.id, "user_id": user_id},
        )
    row.revoked_at = utcnow()
    row.revoked_by = actor.user_id
    session.flush()
    found = users.user_by_id(session, user_id)
    username = found.username if found else str(user_id)
    audit.record(
        session,
        actor,
        "devices.revoke_owner",
        "device",
        device.id,
        payload={"name": device.name, "owner": username, "owner_id": user_id},
    )
    return ownership_view(row, username)


# -- tag rules ---------------------------------------------------------------------------------


def _valid_tree(tree: Any) -> dict[str, Any]:
    try:
        return rules.validate(tree, path="rule")
    except rules.RuleError as exc:
        raise Invalid(str(exc), field=exc.path) from None


def get_rule(session: Session, rule_id: int) -> tuple[TagRule, str]:
    """A tag rule and its tag's name, or 404."""
    found = repository.rule_with_tag(session, rule_id)
    if found is None:
        raise not_found("tag rule", rule_id)
    return found


def rule_view(
    rule: TagRule, tag_name: str, applied: dict[str, int] | None = None
) -> dict[str, Any]:
    """A tag rule as the API shows it (with what saving it changed, when it was saved)."""
    view = {
        "id": rule.id,
        "tag_id": rule.tag_id,
        "tag": tag_name,
        "name": rule.name,
        "rule": rule.rule,
        "is_active": rule.is_active,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }
    if applied is not None:
        view.update(applied)
    return view


def create_rule(session: Session, *, data: TagRuleCreate, actor: Actor) -> dict[str, Any]:
    """Save a tag rule (validated) and apply it to every device at once."""
    tree = _valid_tree(data.rule)
    tag = _tags(session, [data.tag], field="tag")[0]
    rule = TagRule(tag_id=tag.id, name=data.name, rule=tree, is_active=data.is_active)
    session.add(rule)
    session.flush()
    applied = apply_rules(session, tag_ids=[tag.id])
    audit.record(
        session,
        actor,
        "tag_rules.create",
        "tag_rule",
        rule.id,
        payload={"tag": tag.name, "name": rule.name, "rule": tree, **applied},
    )
    return rule_view(rule, tag.name, applied)


def update_rule(
    session: Session, *, rule_id: int, data: TagRuleUpdate, actor: Actor
) -> dict[str, Any]:
    """Change a tag rule and re-apply its tag (and its old tag, when it moved)."""
    rule, tag_name = get_rule(session, rule_id)
    changes = data.model_dump(exclude_unset=True)
    old_tag_id = rule.tag_id
    if "rule" in changes:
        rule.rule = changes["rule"] = _valid_tree(changes["rule"])
    if "tag" in changes:
        tag = _tags(session, [changes["tag"]], field="tag")[0]
        rule.tag_id, tag_name = tag.id, tag.name
    if "name" in changes:
        rule.name = changes["name"]
    if "is_active" in changes:
        rule.is_active = changes["is_active"]
    session.flush()
    applied = apply_rules(session, tag_ids=sorted({old_tag_id, rule.tag_id}))
    audit.record(
        session, actor, "tag_rules.update", "tag_rule", rule.id, payload={**changes, **applied}
    )
    return rule_view(rule, tag_name, applied)


def delete_rule(session: Session, *, rule_id: int, actor: Actor) -> dict[str, int]:
    """Delete a tag rule; devices it alone tagged lose the tag (manual tags stay)."""
    rule, tag_name = get_rule(session, rule_id)
    tag_id, name = rule.tag_id, rule.name
    session.delete(rule)
    session.flush()
    applied = apply_rules(session, tag_ids=[tag_id])
    audit.record(
        session,
        actor,
        "tag_rules.delete",
        "tag_rule",
        rule_id,
        payload={"tag": tag_name, "name": name, **applied},
    )
    return applied


def preview_rule(session: Session, *, tree: Any) -> list[dict[str, Any]]:
    """The devices a rule would match, changing nothing."""
    matcher = rules.compile_rule(_valid_tree(tree))
    return [
        {
            "id": v["id"],
            "name": v["name"],
            "mgmt_address": v["mgmt_address"],
            "status": v["status"],
            "device_type": v["device_type"],
            "site": v["site"],
        }
        for v in repository.rule_values(session)
        if matcher(v)
    ]


def apply_rules(
    session: Session,
    *,
    device_ids: Collection[int] | None = None,
    tag_ids: Collection[int] | None = None,
) -> dict[str, int]:
    """Sync rule-given tags (of some devices/tags, or all) with the active rules."""
    # Limited to some devices and/or tags when given. Manual tags are never added or removed
    # here: a device that has a tag by hand keeps it whatever the rules say.
    empty = {"tagged": 0, "untagged": 0}
    if (device_ids is not None and not device_ids) or (tag_ids is not None and not tag_ids):
        return empty
    matchers: dict[int, list[rules.Matcher]] = defaultdict(list)
    for rule in repository.active_rules(session, tag_ids=tag_ids):
        try:
            matchers[rule.tag_id].append(rules.compile_rule(rule.rule))
        except rules.RuleError as exc:  # stored rules are validated; an imported one may not be
            log.warning("tag rule %s is invalid and skipped: %s", rule.id, exc)
    current = {
        (row.device_id, row.tag_id): row.source
        for row in repository.device_tag_rows(session, device_ids=device_ids, tag_ids=tag_ids)
    }
    scope = set(tag_ids) if tag_ids is not None else set(matchers)
    # Rule tags whose rules are all gone or inactive must go too.
    scope |= {tag for (_, tag), source in current.items() if source == RULE}
    if not scope:
        return empty
    now = utcnow()
    add: list[dict[str, Any]] = []
    remove: dict[int, list[int]] = defaultdict(list)
    for values in repository.rule_values(session, device_ids):
        device_id = values["id"]
        for tag_id in scope:
            wanted = any(match(values) for match in matchers.get(tag_id, ()))
            source = current.get((device_id, tag_id))
            if wanted and source is None:
                add.append(
                    {"device_id": device_id, "tag_id": tag_id, "source": RULE, "created_at": now}
                )
            elif not wanted and source == RULE:
                remove[tag_id].append(device_id)
    for part in repository.chunks(add):
        session.execute(insert(DeviceTag), list(part))
    for tag_id, ids in remove.items():
        for chunk in repository.chunks(ids):
            session.execute(
                delete(DeviceTag).where(
                    DeviceTag.tag_id == tag_id,
                    DeviceTag.device_id.in_(list(chunk)),
                    DeviceTag.source == RULE,
                )
            )
    return {"tagged": len(add), "untagged": sum(len(v) for v in remove.values())}


# -- health ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """What one TCP probe of a device's management address found."""

    device_id: int
    address: str
    port: int
    up: bool
    latency_ms: float | None = None
    error: str | None = None


def record_health(
    session: Session, *, results: list[ProbeResult], now: datetime, timeout: float
) -> dict[str, Any]:
    """Store a snapshot per probe, update reachability, move available <-> unavailable."""
    # Other statuses (maintenance, offline, retired) are set by people and left alone.
    if not results:
        return {"probed": 0, "up": 0, "down": 0, "went_down": [], "came_back": []}
    snapshots = [
        {
            "device_id": r.device_id,
            "status": "up" if r.up else "down",
            "heartbeat_at": now if r.up else None,
            "latency_ms": r.latency_ms,
            "metrics": {
                "check": "tcp",
                "address": r.address,
                "port": r.port,
                "timeout_s": timeout,
                **({"error": r.error} if r.error else {}),
            },
            "created_at": now,
        }
        for r in results
    ]
    for part in repository.chunks(snapshots):
        session.execute(insert(DeviceHealthSnapshot), list(part))
    table = cast(Table, Device.__table__)
    up = [r for r in results if r.up]
    down_ids = [r.device_id for r in results if not r.up]
    if up:
        # Reachability is an observation, not an edit: updated_at keeps its value.
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                reachability="up",
                last_seen_at=bindparam("b_seen", type_=table.c.last_seen_at.type),
                last_latency_ms=bindparam("b_latency"),
                updated_at=table.c.updated_at,
            ),
            [{"b_id": r.device_id, "b_seen": now, "b_latency": r.latency_ms} for r in up],
        )
    for chunk in repository.chunks(down_ids):
        session.execute(
            update(table)
            .where(table.c.id.in_(list(chunk)))
            .values(reachability="down", last_latency_ms=None, updated_at=table.c.updated_at)
        )
    went_down = _move_status(session, down_ids, UP_STATUS, DOWN_STATUS, now)
    came_back = _move_status(session, [r.device_id for r in up], DOWN_STATUS, UP_STATUS, now)
    if went_down or came_back:
        apply_rules(session, device_ids=went_down + came_back)
    session.flush()
    return {
        "probed": len(results),
        "up": len(up),
        "down": len(down_ids),
        "went_down": went_down,
        "came_back": came_back,
    }


def _move_status(
    session: Session, device_ids: list[int], old: str, new: str, now: datetime
) -> list[int]:
    moved = repository.ids_with_status(session, device_ids, old)
    for chunk in repository.chunks(moved):
        session.execute(
            update(Device)
            .where(Device.id.in_(list(chunk)), Device.status == old)
            .values(status=new, updated_at=now),
            execution_options={"synchronize_session": False},
        )
    if moved:
        session.execute(
            insert(DeviceHistory),
            [
                {
                    "device_id": device_id,
                    "field": "status",
                    "old_value": old,
                    "new_value": new,
                    "changed_by": None,
                    "changed_at": now,
                }
                for device_id in moved
            ],
        )
    return moved
