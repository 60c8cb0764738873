"""Devices: the searchable, filterable list with what holds each device now, and one device.

The list costs a fixed number of queries whatever the page size: the filter options, the
page of devices (count + rows), their tags and owners, and what holds them now (the bookings
and maintenance windows under way in the lab, their owners' names). The device page adds its
bookings ahead, maintenance windows, latest health snapshot and stored configurations.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from labkeeper.auth.deps import Principal, require
from labkeeper.backups import repository as backups_repository
from labkeeper.backups import service as backups
from labkeeper.booking import maintenance
from labkeeper.booking import service as bookings
from labkeeper.booking.repository import LIVE, NOT_BOOKABLE
from labkeeper.core.errors import AppError, Invalid
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import Id
from labkeeper.core.time import utcnow
from labkeeper.inventory import repository as inventory
from labkeeper.inventory import service as devices_service
from labkeeper.inventory.models import DEVICE_STATUSES
from labkeeper.inventory.schemas import OwnerAssign
from labkeeper.web.deps import DB, Filter, Form, Paging, refused
from labkeeper.web.render import error_fields, page, redirect, sentence, text, validation_errors

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("devices:read"))]
Writer = Annotated[Principal, Depends(require("devices:write"))]
NOW_LABELS = {"free": "Free now", "booked": "Booked now", "maintenance": "In maintenance now"}
OPTION_LIMIT = PageParams(limit=300, offset=0)
SHORT = PageParams(limit=20, offset=0)
CONFIGS = PageParams(limit=5, offset=0)
HISTORY = PageParams(limit=20, offset=0)
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
        plain=True,
    )
    rows, total = fetch_page(session, stmt, paging, plain=True)
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


def _history(session: Session, device_id: int, paging: PageParams) -> tuple[list[Any], int]:
    """A page of the device's field-level history (newest first), as the API gives it."""
    rows, total = fetch_page(session, inventory.history_query(device_id), paging, scalars=False)
    return [devices_service.history_view(h, name) for h, name in rows], total


@router.get("/devices/{device_id}")
def device_page(device_id: Id, request: Request, session: DB, principal: Reader) -> Response:
    """One device: details, bookings ahead, maintenance, health, owners, tags, configurations."""
    return _device_page(request, session, principal, device_id)


def _device_page(
    request: Request,
    session: Session,
    principal: Principal,
    device_id: int,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
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
    history, history_total = _history(session, device_id, HISTORY)
    extra.setdefault("owner_values", {})
    extra.setdefault("owner_errors", {})
    return page(
        request,
        session,
        principal,
        "devices/detail.html",
        status=status,
        device=device,
        history=history,
        history_total=history_total,
        ahead=ahead,
        ahead_total=ahead_total,
        windows=windows,
        windows_total=windows_total,
        health=snapshots[0] if snapshots else None,
        configs=configs,
        configs_total=configs_total,
        badges=STATUS_BADGES,
        booking_labels=BOOKING_LABELS,
        **extra,
    )


@router.get("/devices/{device_id}/history")
def device_history_page(
    device_id: Id, request: Request, session: DB, principal: Reader, paging: Paging
) -> Response:
    """Every change to the device's fields, newest first, a page at a time."""
    device = devices_service.get_device(session, device_id)
    history, total = _history(session, device_id, paging)
    return page(
        request,
        session,
        principal,
        "devices/history.html",
        device=device,
        history=history,
        total=total,
        paging=paging,
    )


@router.post("/devices/{device_id}/owners")
def owner_add(
    device_id: Id, request: Request, session: DB, form: Form, principal: Writer
) -> Response:
    """Make a user an owner of the device (audited, as through the API)."""
    values = {"username": text(form, "username", limit=200)}
    try:
        data = OwnerAssign(username=values["username"])
        view = devices_service.assign_owner(
            session, device_id=device_id, username=data.username, actor=principal
        )
    except ValidationError as exc:
        errors = validation_errors(exc)
        status = 422
    except AppError as exc:
        refused(request, session, principal, exc)
        if exc.status == 404 and exc.details.get("field") is None:
            raise
        errors = error_fields(exc, {"username"})
        status = exc.status if 400 <= exc.status < 500 else 422
    else:
        message = f"{view['username']} is an owner now."
        return redirect(f"/devices/{device_id}#owners-title", message)
    return _device_page(
        request,
        session,
        principal,
        device_id,
        status=status,
        owner_values=values,
        owner_errors=errors,
    )


@router.post("/devices/{device_id}/owners/{user_id}/revoke")
def owner_revoke(
    device_id: Id, user_id: Id, request: Request, session: DB, form: Form, principal: Writer
) -> Response:
    """End a user's ownership of the device; it stays in the ownership history."""
    try:
        view = devices_service.revoke_owner(
            session, device_id=device_id, user_id=user_id, actor=principal
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        if exc.code == "not_found" and "user_id" not in exc.details:
            raise
        return redirect(f"/devices/{device_id}#owners-title", sentence(exc.message), "error")
    return redirect(
        f"/devices/{device_id}#owners-title", f"{view['username']} no longer owns this device."
    )
