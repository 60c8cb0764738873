"""Devices: the searchable, filterable list with what holds each device now, and one device.

The list costs a fixed number of queries whatever the page size: the filter options, the
page of devices (count + rows), their tags and owners, and what holds them now (the bookings
and maintenance windows under way in the lab, their owners' names). The device page adds its
bookings ahead, maintenance windows, latest health snapshot and stored configurations.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from labkeeper.auth.deps import Principal, require
from labkeeper.backups import repository as backups_repository
from labkeeper.backups import service as backups
from labkeeper.booking import maintenance
from labkeeper.booking import service as bookings
from labkeeper.booking.repository import LIVE, NOT_BOOKABLE
from labkeeper.core.errors import Invalid
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.schemas import Id
from labkeeper.core.time import utcnow
from labkeeper.inventory import repository as inventory
from labkeeper.inventory import service as devices_service
from labkeeper.inventory.models import DEVICE_STATUSES
from labkeeper.web.deps import DB, Filter, Paging
from labkeeper.web.render import page

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("devices:read"))]
NOW_LABELS = {"free": "Free now", "booked": "Booked now", "maintenance": "In maintenance now"}
OPTION_LIMIT = PageParams(limit=300, offset=0)
SHORT = PageParams(limit=20, offset=0)
CONFIGS = PageParams(limit=5, offset=0)
STATUS_BADGES = {
    "available": "badge-success",
    "maintenance": "badge-warning",
    "offline": "badge-danger",
    "unavailable": "badge-danger",
    "retired": "",
}
BOOKING_LABELS = {
    "PENDING": "pending approval",
    "CONFIRMED": "confirmed",
    "ACTIVE": "in use",
    "CONFLICTING": "waitlisted",
}


def filter_options(session: Session) -> dict[str, list[str]]:
    """Names of the device types, sites and tags to filter by."""
    types, _ = fetch_page(session, inventory.device_types_query(), OPTION_LIMIT, scalars=False)
    sites, _ = fetch_page(session, inventory.sites_query(), OPTION_LIMIT, scalars=False)
    tags, _ = fetch_page(session, inventory.tags_query(), OPTION_LIMIT, scalars=False)
    return {
        "types": [row[0].name for row in types],
        "sites": [row[0].name for row in sites],
        "tags": [row[0].name for row in tags],
    }


def _bookable(view: dict[str, Any]) -> bool:
    return bool(view["device_type"]["is_schedulable"]) and view["status"] not in NOT_BOOKABLE


def with_availability(session: Session, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each device with what holds it now (`now`: a dict with `state`), in one go."""
    held = bookings.availability_now(session, [v["id"] for v in views])
    for v in views:
        v["bookable"] = _bookable(v)
        v["now"] = held.get(v["id"]) or {"state": "free" if v["bookable"] else "unbookable"}
    return views


@router.get("/devices")
def devices_page(
    request: Request,
    session: DB,
    principal: Reader,
    paging: Paging,
    q: Filter = None,
    device_type: Annotated[str | None, Query(alias="type", max_length=100)] = None,
    site: Filter = None,
    tag: Filter = None,
    status: Filter = None,
    now: Filter = None,
) -> Response:
    """Devices with search and filters, and whether each is free, booked or in maintenance now."""
    # The filter form sends empty values for "any"; anything else must be a known value.
    status = status or None
    now = now or None
    if status is not None and status not in DEVICE_STATUSES:
        raise Invalid(f"unknown status {status!r}", field="status")
    if now is not None and now not in NOW_LABELS:
        raise Invalid("right now is one of free, booked, maintenance", field="now")
    filters = {
        "q": (q or "").strip(),
        "type": (device_type or "").strip(),
        "site": (site or "").strip(),
        "tag": (tag or "").strip(),
        "status": status or "",
        "now": now or "",
    }
    stmt = inventory.devices_query(
        q=filters["q"] or None,
        device_type=filters["type"] or None,
        site=filters["site"] or None,
        tags=[filters["tag"]] if filters["tag"] else [],
        status=status,
        free_now=True if now == "free" else None,
        held_now=now if now in ("booked", "maintenance") else None,
        now=utcnow(),
    )
    rows, total = fetch_page(session, stmt, paging)
    views = with_availability(session, devices_service.device_views(session, rows))
    return page(
        request,
        session,
        principal,
        "devices/list.html",
        devices=views,
        total=total,
        paging=paging,
        filters=filters,
        filtered=any(filters.values()),
        options=filter_options(session),
        statuses=DEVICE_STATUSES,
        now_labels=NOW_LABELS,
        badges=STATUS_BADGES,
        booking_labels=BOOKING_LABELS,
    )


@router.get("/devices/{device_id}")
def device_page(device_id: Id, request: Request, session: DB, principal: Reader) -> Response:
    """One device: details, bookings ahead, maintenance, health, owners, tags, configurations."""
    device = with_availability(session, [devices_service.device_detail(session, device_id)])[0]
    moment = utcnow()
    ahead, ahead_total = bookings.list_bookings(
        session,
        filters={"device_id": device_id, "since": moment, "statuses": LIVE, "sort": "start"},
        page=SHORT,
    )
    windows, windows_total = maintenance.list_windows(
        session, filters={"device_id": device_id, "since": moment}, page=SHORT
    )
    snapshots, _ = fetch_page(session, inventory.health_query(device_id), PageParams(limit=1))
    configs: list[dict[str, Any]] = []
    configs_total = 0
    if principal.can("backups:read"):
        found, configs_total = fetch_page(
            session, backups_repository.backups_query(device_id=device_id), CONFIGS, scalars=False
        )
        configs = [backups.backup_view(row, name) for row, name in found]
    see_all = principal.can("bookings:read")
    for b in ahead:
        b["linked"] = see_all or b["user_id"] == principal.user_id
        b["current"] = b["start"] <= moment < b["end"]
    return page(
        request,
        session,
        principal,
        "devices/detail.html",
        device=device,
        ahead=ahead,
        ahead_total=ahead_total,
        windows=windows,
        windows_total=windows_total,
        health=snapshots[0] if snapshots else None,
        configs=configs,
        configs_total=configs_total,
        badges=STATUS_BADGES,
        booking_labels=BOOKING_LABELS,
    )
