"""Admin pages for the inventory: create, change and deactivate devices; plan and end
maintenance windows and see the bookings they collide with.

Changes go through the inventory service (`create_device`, `update_device`,
`set_device_tags`) and the maintenance service (`create`, `cancel`), so names, ports and tags
are checked there and every change is audited, as through the API.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from labkeeper.auth.deps import Principal, require
from labkeeper.booking import maintenance
from labkeeper.booking.schemas import MaintenanceCreate
from labkeeper.core.errors import AppError
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import Id
from labkeeper.core.time import utcnow
from labkeeper.inventory import repository as inventory
from labkeeper.inventory import service as devices_service
from labkeeper.inventory.models import DEVICE_STATUSES
from labkeeper.inventory.schemas import DeviceCreate, DeviceUpdate
from labkeeper.web.deps import DB, Filter, Form, Paging, refused
from labkeeper.web.pages.bookings import _local, _moment
from labkeeper.web.pages.devices import STATUS_BADGES, filter_options
from labkeeper.web.render import (
    error_fields,
    format_dt,
    lab_timezone,
    page,
    redirect,
    sentence,
    text,
    validation_errors,
)

router = APIRouter(include_in_schema=False)

Admin = Annotated[Principal, Depends(require("devices:write"))]
TEXT_FIELDS = (
    "name",
    "device_type",
    "site",
    "platform",
    "mgmt_address",
    "hostname",
    "serial",
    "model",
    "rack",
    "switch_name",
)
NUMBER_FIELDS = ("ssh_port", "switch_in_port", "switch_out_port")
FIELDS = (*TEXT_FIELDS, *NUMBER_FIELDS, "notes", "tags", "status")
MAX_NAMES = 500


def _tag_names(raw: str) -> list[str]:
    return list(dict.fromkeys(n for n in (p.strip() for p in re.split(r"[,\n]", raw)) if n))


def _device_data(form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    """The posted device form as service input, and the values as typed (to show back)."""
    raw = {f: text(form, f, limit=6000 if f == "notes" else 300) for f in FIELDS}
    data: dict[str, Any] = {f: raw[f] or None for f in TEXT_FIELDS}
    data["name"] = raw["name"]
    data["device_type"] = raw["device_type"]
    data["notes"] = raw["notes"] or None
    data["ssh_port"] = raw["ssh_port"] or 22
    for f in ("switch_in_port", "switch_out_port"):
        data[f] = raw[f] or None
    if raw["status"]:
        data["status"] = raw["status"]
    data["tags"] = _tag_names(raw["tags"])
    return data, raw


def _form_page(
    request: Request,
    session: Session,
    principal: Principal,
    *,
    device: dict[str, Any] | None,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page(
        request,
        session,
        principal,
        "admin/device_form.html",
        status=status,
        device=device,
        values=values,
        errors=errors or {},
        options=filter_options(session),
        statuses=DEVICE_STATUSES,
    )


def _values_of(device: dict[str, Any]) -> dict[str, str]:
    out = {f: "" if device.get(f) is None else str(device[f]) for f in FIELDS}
    out["device_type"] = device["device_type"]["name"]
    out["site"] = device["site"]["name"] if device["site"] else ""
    out["tags"] = ", ".join(t["name"] for t in device["tags"] if t["source"] == "manual")
    return out


# -- devices -------------------------------------------------------------------------------


@router.get("/admin/devices")
def admin_devices(
    request: Request, session: DB, principal: Admin, paging: Paging, q: Filter = None
) -> Response:
    """Devices to change or deactivate, and a form to add one."""
    query = (q or "").strip()
    rows, total = fetch_page(
        session, inventory.devices_query(q=query or None, plain=True), paging, plain=True
    )
    return page(
        request,
        session,
        principal,
        "admin/devices.html",
        devices=devices_service.device_views(session, rows),
        total=total,
        paging=paging,
        filters={"q": query},
        badges=STATUS_BADGES,
        options=filter_options(session),
        statuses=DEVICE_STATUSES,
        values={"ssh_port": "22"},
    )


@router.get("/admin/devices/new")
def new_device(request: Request, session: DB, principal: Admin) -> Response:
    """The form to add a device."""
    return _form_page(request, session, principal, device=None, values={"ssh_port": "22"})


@router.post("/admin/devices")
def create_device(request: Request, session: DB, form: Form, principal: Admin) -> Response:
    """Add a device (type, site and tags by name)."""
    data, raw = _device_data(form)
    try:
        device = devices_service.create_device(session, data=DeviceCreate(**data), actor=principal)
    except ValidationError as exc:
        return _form_page(
            request,
            session,
            principal,
            device=None,
            values=raw,
            errors=validation_errors(exc),
            status=422,
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        return _form_page(
            request,
            session,
            principal,
            device=None,
            values=raw,
            errors=error_fields(exc, set(FIELDS)),
            status=exc.status,
        )
    return redirect(f"/devices/{device.id}", f"Device {device.name} added.")


@router.get("/admin/devices/{device_id}")
def edit_device(device_id: Id, request: Request, session: DB, principal: Admin) -> Response:
    """The form to change a device."""
    device = devices_service.device_detail(session, device_id)
    return _form_page(request, session, principal, device=device, values=_values_of(device))


@router.post("/admin/devices/{device_id}")
def update_device(
    device_id: Id, request: Request, session: DB, form: Form, principal: Admin
) -> Response:
    """Change a device and its tags."""
    device = devices_service.device_detail(session, device_id)
    data, raw = _device_data(form)
    tags = data.pop("tags")
    try:
        changes = DeviceUpdate(**data)
        devices_service.update_device(session, device_id=device_id, data=changes, actor=principal)
        devices_service.set_device_tags(session, device_id=device_id, names=tags, actor=principal)
    except ValidationError as exc:
        return _form_page(
            request,
            session,
            principal,
            device=device,
            values=raw,
            errors=validation_errors(exc),
            status=422,
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        return _form_page(
            request,
            session,
            principal,
            device=device,
            values=raw,
            errors=error_fields(exc, set(FIELDS)),
            status=exc.status,
        )
    return redirect(f"/devices/{device_id}", "Device saved.")


def _set_status(
    request: Request, session: Session, principal: Principal, device_id: int, status: str
) -> Response:
    try:
        device = devices_service.update_device(
            session, device_id=device_id, data=DeviceUpdate(status=status), actor=principal
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect("/admin/devices", sentence(exc.message), "error")
    what = "retired: it can no longer be booked" if status == "retired" else "available again"
    return redirect("/admin/devices", f"Device {device.name} is {what}.")


@router.post("/admin/devices/{device_id}/deactivate")
def deactivate_device(
    device_id: Id, request: Request, session: DB, form: Form, principal: Admin
) -> Response:
    """Retire a device: it stays with its history but can no longer be booked."""
    return _set_status(request, session, principal, device_id, "retired")


@router.post("/admin/devices/{device_id}/reactivate")
def reactivate_device(
    device_id: Id, request: Request, session: DB, form: Form, principal: Admin
) -> Response:
    """Make a retired device available again."""
    return _set_status(request, session, principal, device_id, "available")


# -- maintenance ---------------------------------------------------------------------------

Show = Literal["current", "all"]


def _maintenance_page(
    request: Request,
    session: Session,
    principal: Principal,
    paging: PageParams,
    *,
    show: str = "current",
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    now = utcnow()
    filters: dict[str, Any] = {"since": now} if show == "current" else {"include_cancelled": True}
    windows, total = maintenance.list_windows(session, filters=filters, page=paging)
    clashes = maintenance.collisions(session, [w["id"] for w in windows])
    for w in windows:
        w["collisions"] = clashes.get(w["id"], [])
        w["under_way"] = w["start"] <= now < w["end"] and w["cancelled_at"] is None
        w["over"] = w["end"] <= now or w["cancelled_at"] is not None
    tz = lab_timezone(session)
    start = (now + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    shown = {"start": _local(start, tz), "end": _local(start + timedelta(hours=4), tz)}
    shown.update(values or {})
    return page(
        request,
        session,
        principal,
        "admin/maintenance.html",
        status=status,
        windows=windows,
        total=total,
        paging=paging,
        show=show,
        values=shown,
        errors=errors or {},
    )


@router.get("/admin/maintenance")
def admin_maintenance(
    request: Request,
    session: DB,
    principal: Admin,
    paging: Paging,
    show: Annotated[Show, Query()] = "current",
    device: Filter = None,
) -> Response:
    """Maintenance windows now and ahead (or all), the bookings they collide with, a form."""
    values = {"devices": device.strip()} if device else {}
    return _maintenance_page(request, session, principal, paging, show=show, values=values)


@router.post("/admin/maintenance")
def create_maintenance(request: Request, session: DB, form: Form, principal: Admin) -> Response:
    """Put devices in maintenance for a time; bookings in the way are marked and told."""
    tz = lab_timezone(session)
    values = {
        "devices": text(form, "devices", limit=20000),
        "start": text(form, "start", limit=40),
        "end": text(form, "end", limit=40),
        "reason": text(form, "reason", limit=2500),
    }
    errors: dict[str, str] = {}
    names = _tag_names(values["devices"])
    ids: list[int] = []
    if not names:
        errors["devices"] = "Name at least one device"
    elif len(names) > MAX_NAMES:
        errors["devices"] = f"At most {MAX_NAMES} devices at once"
    else:
        missing = []
        for name in names:
            found = inventory.device_by_name(session, name)
            if found is None:
                missing.append(name)
            else:
                ids.append(found.id)
        if missing:
            errors["devices"] = "No device called " + ", ".join(missing[:10])
    start = _moment(form, "start", tz, errors)
    end = _moment(form, "end", tz, errors)
    paging = PageParams()
    if errors or start is None or end is None:
        return _maintenance_page(
            request, session, principal, paging, values=values, errors=errors, status=422
        )
    try:
        data = MaintenanceCreate(
            device_ids=ids, start=start, end=end, reason=values["reason"] or None
        )
        done = maintenance.create(session, data=data, actor=principal)
    except ValidationError as exc:
        return _maintenance_page(
            request,
            session,
            principal,
            paging,
            values=values,
            errors=validation_errors(exc),
            status=422,
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        return _maintenance_page(
            request,
            session,
            principal,
            paging,
            values=values,
            errors=error_fields(exc, {"start", "end", "reason"}),
            status=exc.status,
        )
    count = len(done["windows"])
    affected = len(done["affected_booking_ids"])
    message = (
        f"Maintenance planned on {count} device{'s' if count != 1 else ''} "
        f"from {format_dt(start, tz)} to {format_dt(end, tz)}."
    )
    if affected:
        message += (
            f" {affected} booking{'s' if affected != 1 else ''} collide with it; "
            "their owners have been told (listed below)."
        )
    return redirect("/admin/maintenance", message, "warning" if affected else "success")


@router.post("/admin/maintenance/{window_id}/end")
def end_maintenance(
    window_id: Id, request: Request, session: DB, form: Form, principal: Admin
) -> Response:
    """End (or call off) a maintenance window: it stops blocking and the waitlist moves up."""
    try:
        window = maintenance.cancel(session, window_id=window_id, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return _maintenance_page(
            request,
            session,
            principal,
            PageParams(),
            errors={"__all__": sentence(exc.message)},
            status=exc.status,
        )
    return redirect("/admin/maintenance", f"Maintenance of {window['device_name']} ended.")
