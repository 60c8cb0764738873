"""The timeline: devices down the side, time across; pick free slots into a cart and book them.

The grid is drawn on the server (bars positioned in percent of the window), so a page of 500
devices costs a fixed number of queries: the devices page (count + rows), the filter options,
and the timeline's bookings, owners and maintenance windows. Picking slots, the cart (kept in
localStorage) and the conflict check are `static/js/timeline.js`; booking posts the cart to
`/timeline/book`, which creates one group through the booking service, like the API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from labkeeper.auth.deps import Principal, require
from labkeeper.booking import repository as booking_repository
from labkeeper.booking import service as bookings
from labkeeper.booking.schemas import MAX_ITEMS, BookingCreate, BookingItem
from labkeeper.core.errors import AppError, Invalid
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.routing import APIRouter, blocking
from labkeeper.core.time import utcnow
from labkeeper.inventory import repository as inventory
from labkeeper.web.deps import DB, Filter, Form, refused
from labkeeper.web.render import (
    day_start,
    lab_timezone,
    page,
    query_string,
    redirect,
    sentence,
    templates,
    text,
    validation_errors,
)

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("devices:read"))]
Booker = Annotated[Principal, Depends(require("bookings:write"))]

View = Literal["day", "week", "2weeks"]
# view -> (days shown, hours per selectable slot)
VIEWS: dict[str, tuple[int, int]] = {"day": (1, 1), "week": (7, 3), "2weeks": (14, 6)}
VIEW_LABELS = {"day": "Day", "week": "Week", "2weeks": "Two weeks"}
DEFAULT_ROWS = 100
MAX_ROWS = 500  # bench/web_timeline.py measures a full page of this size
MAX_DAYS_AWAY = 5 * 366  # how far from today the timeline may be moved
OPTION_LIMIT = PageParams(limit=300, offset=0)
STATUS_LABELS = {
    "PENDING": "pending approval",
    "CONFIRMED": "confirmed",
    "ACTIVE": "in use",
    "COMPLETED": "completed",
    "CONFLICTING": "waitlisted",
}


@dataclass
class Bar:
    """A booking or maintenance window drawn on a lane."""

    left: float
    width: float
    css: str
    label: str
    title: str
    href: str | None = None


@dataclass
class Lane:
    """One device's row."""

    id: int
    name: str
    kind: str
    site: str
    bookable: bool
    bars: list[Bar] = field(default_factory=list)
    busy: list[tuple[float, float]] = field(default_factory=list)  # percent spans, for the JS


@dataclass
class Column:
    """A labelled stretch of the time axis."""

    left: float
    width: float
    label: str
    sub: str = ""
    weekend: bool = False


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _pct(value: datetime, start: datetime, span: float) -> float:
    return max(0.0, min(100.0, (value - start).total_seconds() / span * 100))


def _columns(view: str, start: datetime, days: int, zone: ZoneInfo, span: float) -> list[Column]:
    out = []
    if view == "day":
        for hour in range(24):
            at = start + timedelta(hours=hour)
            out.append(Column(_pct(at, start, span), 100 / 24, f"{hour:02d}"))
        return out
    for d in range(days):
        at = (start + timedelta(days=d)).astimezone(zone)
        out.append(
            Column(
                100 * d / days,
                100 / days,
                at.strftime("%a"),
                at.strftime("%d %b") if view == "week" else at.strftime("%d"),
                weekend=at.weekday() >= 5,
            )
        )
    return out


def _fmt(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%a %d %b %H:%M")


def _lanes(
    devices: list[Any],
    grid: dict[str, Any] | None,
    *,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    me: int | None,
    shared: set[str] | frozenset[str] = frozenset(),
) -> list[Lane]:
    span = (end - start).total_seconds()
    by_id = {item["device_id"]: item for item in (grid or {}).get("items", [])}
    lanes = []
    for device in devices:
        info = by_id.get(device.id, {})
        lane = Lane(
            id=device.id,
            name=device.name,
            kind=device.device_type.name if device.device_type else "",
            site=device.site.name if device.site else "",
            bookable=bool(info.get("bookable", False)),
        )
        for b in info.get("bookings", []):
            left = _pct(b["start"], start, span)
            width = max(_pct(b["end"], start, span) - left, 0.3)
            status = b["status"]
            mine = me is not None and b["user_id"] == me
            with_me = not mine and b["grouped_booking_id"] in shared
            when = f"{_fmt(b['start'], zone)} → {_fmt(b['end'], zone)}"
            who = "you" if mine else (b.get("username") or "someone")
            label = STATUS_LABELS.get(status, status.lower())
            css = f"bar bar-{status.lower()}"
            if mine:
                css += " bar-mine"
            elif with_me:
                css += " bar-shared"
            lane.bars.append(
                Bar(
                    left,
                    width,
                    css,
                    "Yours" if mine else (b.get("username") or ""),
                    f"{label.capitalize()}, booked by {who}"
                    + (", shared with you" if with_me else "")
                    + f": {when}",
                    f"/bookings/{b['grouped_booking_id']}" if mine or with_me else None,
                )
            )
            if status in ("PENDING", "CONFIRMED", "ACTIVE"):
                lane.busy.append((round(left, 3), round(left + width, 3)))
        for w in info.get("maintenance", []):
            left = _pct(w["start"], start, span)
            width = max(_pct(w["end"], start, span) - left, 0.3)
            reason = w.get("reason") or "maintenance"
            lane.bars.append(
                Bar(
                    left,
                    width,
                    "bar bar-maintenance",
                    "Maintenance",
                    f"Maintenance ({reason}): {_fmt(w['start'], zone)} → {_fmt(w['end'], zone)}",
                )
            )
            lane.busy.append((round(left, 3), round(left + width, 3)))
        lanes.append(lane)
    return lanes


def _options(session: DB) -> dict[str, list[str]]:
    """Names for the filter menus: device types, sites and tags (two queries each)."""
    types, _ = fetch_page(session, inventory.device_types_query(), OPTION_LIMIT, scalars=False)
    sites, _ = fetch_page(session, inventory.sites_query(), OPTION_LIMIT, scalars=False)
    tags, _ = fetch_page(session, inventory.tags_query(), OPTION_LIMIT, scalars=False)
    return {
        "types": [row[0].name for row in types],
        "sites": [row[0].name for row in sites],
        "tags": [row[0].name for row in tags],
    }


def _window(view: str, start: date | None, tz: str) -> tuple[date, datetime, datetime]:
    zone = _zone(tz)
    today = utcnow().astimezone(zone).date()
    first = start or today
    if abs((first - today).days) > MAX_DAYS_AWAY:
        raise Invalid(
            "the timeline goes at most five years back or ahead", field="start", code="bad_start"
        )
    days = VIEWS[view][0]
    begin = day_start(first, tz).astimezone(UTC)
    end = day_start(first + timedelta(days=days), tz).astimezone(UTC)
    return first, begin, end


def timeline_context(
    session: DB,
    principal: Principal,
    *,
    view: str,
    start: date | None,
    filters: dict[str, str | None],
    rows: int,
    offset: int,
) -> dict[str, Any]:
    """Everything the timeline template shows, in a fixed number of queries."""
    tz = lab_timezone(session)
    zone = _zone(tz)
    first, begin, end = _window(view, start, tz)
    devices, total = fetch_page(
        session,
        inventory.devices_query(
            q=filters.get("q"),
            device_type=filters.get("type"),
            site=filters.get("site"),
            tags=[tag] if (tag := filters.get("tag")) else [],
        ),
        PageParams(limit=rows, offset=offset),
    )
    grid = None
    shared: set[str] = set()
    if devices:
        if principal.user_id is not None:
            # Groups I collaborate on in this window: one query, however many bookings it has.
            shared = booking_repository.collaborations_in_window(
                session, principal.user_id, begin, end
            )
        grid = bookings.timeline(
            session,
            start=begin,
            end=end,
            filters={"device_ids": [d.id for d in devices]},
            page=PageParams(limit=len(devices), offset=0),
        )
    days, slot_hours = VIEWS[view]
    span = (end - begin).total_seconds()
    now = utcnow()
    params = {k: v for k, v in filters.items() if v}
    base = {"view": view, "start": first.isoformat(), **params}
    if rows != DEFAULT_ROWS:
        base["limit"] = str(rows)
    step = timedelta(days=days)
    return {
        "view": view,
        "views": VIEW_LABELS,
        "first": first,
        "begin": begin,
        "end": end,
        "last_day": first + timedelta(days=days - 1),
        "slot_hours": slot_hours,
        "slots": days * 24 // slot_hours,
        "columns": _columns(view, begin, days, zone, span),
        "now_pct": _pct(now, begin, span) if begin < now < end else (100.0 if now >= end else 0.0),
        "lanes": _lanes(
            devices, grid, start=begin, end=end, zone=zone, me=principal.user_id, shared=shared
        ),
        "total": total,
        "paging": PageParams(limit=rows, offset=offset),
        "filters": filters,
        "options": _options(session),
        "base_params": base,
        "prev_url": "/timeline" + query_string({**base, "start": (first - step).isoformat()}),
        "next_url": "/timeline" + query_string({**base, "start": (first + step).isoformat()}),
        "today_url": "/timeline" + query_string({**base, "start": ""}),
        "view_urls": {v: "/timeline" + query_string({**base, "view": v}) for v in VIEWS},
        "can_book": principal.can("bookings:write"),
    }


@router.get("/timeline")
@blocking  # two weeks of 500 devices is a few hundred ms of work
def timeline_page(
    request: Request,
    session: DB,
    principal: Reader,
    view: View = "week",
    start: Annotated[date | None, Query()] = None,
    device_type: Annotated[str | None, Query(alias="type", max_length=100)] = None,
    site: Filter = None,
    tag: Filter = None,
    q: Filter = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = DEFAULT_ROWS,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Devices and their bookings over a day, a week or two weeks; pick slots and book them."""
    filters = {"type": device_type, "site": site, "tag": tag, "q": q}
    ctx = timeline_context(
        session,
        principal,
        view=view,
        start=start,
        filters={k: (v.strip() or None) if v else None for k, v in filters.items()},
        rows=limit,
        offset=offset,
    )
    return page(request, session, principal, "timeline/timeline.html", **ctx)


# -- the cart -----------------------------------------------------------------------------

ITEM = re.compile(r"^(\d{1,12})\|([0-9T:.+\-Z ]{10,40})\|([0-9T:.+\-Z ]{10,40})$")


def _when(value: str, zone: ZoneInfo) -> datetime:
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:  # typed by hand: the lab's time
        moment = moment.replace(tzinfo=zone)
    return moment


@dataclass
class Cart:
    """A posted cart: the items as typed, the request built from them, and what was wrong."""

    raw: list[str]
    request: BookingCreate | None = None
    errors: dict[str, str] = field(default_factory=dict)
    collaborators: str = ""
    comment: str = ""
    waitlist: bool = False


def _cart(form: FormData, tz: str) -> Cart:
    zone = _zone(tz)
    raw = [v.strip() for v in form.getlist("item") if isinstance(v, str) and v.strip()]
    cart = Cart(
        raw=raw[: MAX_ITEMS + 1],
        collaborators=text(form, "collaborators", limit=2000),
        comment=text(form, "comment", limit=2000),
        waitlist=text(form, "waitlist") in ("1", "on", "true", "yes"),
    )
    if not raw:
        cart.errors["items"] = "The cart is empty: pick at least one free slot on the timeline"
        return cart
    if len(raw) > MAX_ITEMS:
        cart.errors["items"] = f"A booking can hold at most {MAX_ITEMS} slots"
        return cart
    items = []
    for value in raw:
        found = ITEM.match(value)
        try:
            if not found:
                raise ValueError(value)
            items.append(
                {
                    "device_id": int(found.group(1)),
                    "start": _when(found.group(2), zone),
                    "end": _when(found.group(3), zone),
                }
            )
        except (ValueError, OverflowError):
            cart.errors["items"] = "A slot in the cart could not be read; remove it and pick again"
            return cart
    names = [n for n in re.split(r"[\s,;]+", cart.collaborators) if n]
    try:
        cart.request = BookingCreate(
            items=[BookingItem(**i) for i in items],
            comment=cart.comment or None,
            collaborators=names,
            waitlist=cart.waitlist,
        )
    except ValidationError as exc:
        cart.errors = {
            ("items" if k.startswith("items") or k == "device_id" else k): v
            for k, v in validation_errors(exc).items()
        }
    return cart


def _result(
    request: Request,
    session: DB,
    principal: Principal,
    cart: Cart,
    *,
    status: int,
    conflicts: list[dict[str, Any]] | None = None,
) -> Response:
    names: dict[int, str] = {}
    if cart.request is not None:
        names = booking_repository.device_names(session, [i.device_id for i in cart.request.items])
    tz = lab_timezone(session)
    zone = _zone(tz)
    items = []
    if cart.request is not None:
        for index, item in enumerate(cart.request.items):
            items.append(
                {
                    "index": index,
                    "device": names.get(item.device_id, f"device {item.device_id}"),
                    "start": _fmt(item.start, zone),
                    "end": _fmt(item.end, zone),
                    "conflicts": [c for c in conflicts or [] if c.get("item") == index],
                }
            )
    return page(
        request,
        session,
        principal,
        "timeline/result.html",
        status=status,
        cart=cart,
        items=items,
        conflicts=conflicts or [],
        errors=cart.errors,
        zone_name=tz,
        fmt=lambda v: _fmt(datetime.fromisoformat(v.replace("Z", "+00:00")), zone),
    )


@router.post("/timeline/book")
def book(request: Request, session: DB, form: Form, principal: Booker) -> Response:
    """Book the cart as one group (all slots or none), or join the waitlist for what is taken."""
    cart = _cart(form, lab_timezone(session))
    if cart.request is None:
        return _result(request, session, principal, cart, status=422)
    try:
        created = bookings.create(
            session, data=cart.request, actor=principal, source={"via": "timeline"}
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        conflicts = exc.details.get("conflicts") if exc.code == "booking_conflict" else None
        field_name = exc.details.get("field")
        key = "collaborators" if field_name == "collaborators" else "__all__"
        cart.errors[key] = sentence(exc.message)
        return _result(
            request,
            session,
            principal,
            cart,
            status=exc.status,
            conflicts=conflicts if isinstance(conflicts, list) else None,
        )
    gid = created["grouped_booking_id"]
    count = len(created["bookings"])
    status = created["status"]
    words = {
        "CONFIRMED": "confirmed",
        "PENDING": "waiting for approval",
        "CONFLICTING": "on the waitlist",
    }
    message = (
        f"Booked {count} slot{'s' if count != 1 else ''}: {words.get(status, status.lower())}."
    )
    pages: frozenset[str] = getattr(request.app.state, "web_pages", frozenset())
    if "/bookings/{grouped_booking_id}" in pages:
        return redirect(f"/bookings/{gid}", message)
    first = min(i.start for i in cart.request.items).astimezone(_zone(lab_timezone(session)))
    return redirect(
        "/timeline" + query_string({"view": "week", "start": first.date().isoformat()}), message
    )


@router.post("/timeline/check")
def check(request: Request, session: DB, form: Form, principal: Booker) -> Response:
    """What each slot of the cart collides with (an HTML fragment for the cart panel)."""
    tz = lab_timezone(session)
    zone = _zone(tz)
    cart = _cart(form, tz)
    results = []
    status = 200
    if cart.request is not None:
        names = booking_repository.device_names(session, [i.device_id for i in cart.request.items])
        for item in cart.request.items:
            entry: dict[str, Any] = {
                "device": names.get(item.device_id, f"device {item.device_id}"),
                "start": _fmt(item.start, zone),
                "end": _fmt(item.end, zone),
                "busy": [],
                "problem": "",
            }
            try:
                answer = bookings.device_availability(
                    session, device_id=item.device_id, start=item.start, end=item.end
                )
            except AppError as exc:
                entry["problem"] = sentence(exc.message)
                status = 422
            else:
                if not answer["bookable"]:
                    entry["problem"] = "This device cannot be booked"
                entry["busy"] = [
                    {
                        "what": (
                            f"maintenance ({b['reason']})"
                            if b["kind"] == "maintenance"
                            else f"{STATUS_LABELS.get(b['status'], b['status'])} booking of "
                            + (b.get("username") or "someone")
                        ),
                        "start": _fmt(b["start"], zone),
                        "end": _fmt(b["end"], zone),
                    }
                    for b in answer["busy"]
                ]
            results.append(entry)
    else:
        status = 422
    return templates.TemplateResponse(
        request,
        "timeline/_check.html",
        {"results": results, "errors": cart.errors},
        status_code=status,
    )
