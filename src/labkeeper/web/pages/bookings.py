"""My bookings: tabs of upcoming, active and past groups, favorites, and one group's page.

Every action (cancel, extend, rebook, save as favorite, book a favorite, change the comment or
collaborators) calls the booking service, which holds the rules: transitions, limits, who may
change what, and collisions (409 with the bookings or maintenance in the way). A refusal is
shown on the group's page (or the list, for favorites) with the status the service gave it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from labkeeper.auth.deps import Principal, require
from labkeeper.booking import service as bookings
from labkeeper.booking.repository import LIVE
from labkeeper.booking.schemas import FavoriteBook, FavoriteCreate, GroupUpdate, RebookBody
from labkeeper.core.errors import AppError
from labkeeper.core.pagination import PageParams
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import MAX_ID
from labkeeper.core.time import utcnow
from labkeeper.web.deps import DB, Form, Paging, SignedIn, refused
from labkeeper.web.render import (
    format_dt,
    lab_timezone,
    page,
    redirect,
    sentence,
    text,
    validation_errors,
)

router = APIRouter(include_in_schema=False)

Booker = Annotated[Principal, Depends(require("bookings:write"))]
Tab = Literal["upcoming", "active", "past"]
# tab -> the scope of my_groups
SCOPES = {"upcoming": "ahead", "active": "active", "past": "past"}
TAB_LABELS = {"upcoming": "Upcoming", "active": "Active now", "past": "Past"}
FAVORITES = PageParams(limit=50, offset=0)
STATUS_LABELS = {
    "PENDING": "pending approval",
    "CONFIRMED": "confirmed",
    "ACTIVE": "in use",
    "COMPLETED": "completed",
    "CANCELLED": "cancelled",
    "REJECTED": "declined",
    "EXPIRED": "expired",
    "CONFLICTING": "waitlisted",
}
STATUS_BADGES = {
    "PENDING": "badge-warning",
    "CONFIRMED": "badge-info",
    "ACTIVE": "badge-success",
    "CONFLICTING": "badge-danger",
    "REJECTED": "badge-danger",
}
GID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _group_id(value: str) -> str:
    """A group id from the path; anything that cannot be one is a 404 (not a 500)."""
    if not GID.match(value):
        from labkeeper.core.errors import not_found

        raise not_found("booking group", value[:64])
    return value


def _moment(form: FormData, name: str, tz: str, errors: dict[str, str]) -> datetime | None:
    """A `datetime-local` field (the lab's time) or an ISO time with an offset, as aware."""
    raw = text(form, name, limit=40)
    if not raw:
        errors[name] = "Choose a date and time"
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        errors[name] = "Use a date and time like 2030-05-17 09:00"
        return None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=ZoneInfo(tz))
        except (KeyError, ValueError):  # pragma: no cover - the setting is validated
            moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment


def _local(value: datetime | None, tz: str) -> str:
    """A time as a `datetime-local` input value in the lab's time zone."""
    return format_dt(value, tz, "%Y-%m-%dT%H:%M") if value else ""


def conflict_lines(exc: AppError, names: dict[int, str], tz: str) -> list[str]:
    """The bookings and maintenance windows a refused request collides with, in words."""
    lines = []
    for c in exc.details.get("conflicts", []) if isinstance(exc.details, dict) else []:
        if not isinstance(c, dict):
            continue
        device = names.get(c.get("device_id", 0)) or f"device #{c.get('device_id')}"
        try:
            start = datetime.fromisoformat(str(c.get("start", "")).replace("Z", "+00:00"))
            end = datetime.fromisoformat(str(c.get("end", "")).replace("Z", "+00:00"))
            when = f"{format_dt(start, tz)} to {format_dt(end, tz)}"
        except ValueError:
            when = ""
        if c.get("kind") == "maintenance":
            reason = f" ({c['reason']})" if c.get("reason") else ""
            lines.append(f"{device} is in maintenance {when}{reason}")
        else:
            status = STATUS_LABELS.get(str(c.get("status")), str(c.get("status", "")).lower())
            who = c.get("username") or "someone"
            lines.append(f"{device} is booked by {who} {when} ({status})")
    return lines[:20]


# -- my bookings ---------------------------------------------------------------------------


def _list_page(
    request: Request,
    session: DB,
    principal: Principal,
    tab: str,
    paging: PageParams,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    favorite_id: int | None = None,
    values: dict[str, str] | None = None,
    conflicts: list[str] | None = None,
) -> Response:
    tz = lab_timezone(session)
    groups, total = bookings.my_groups(session, actor=principal, scope=SCOPES[tab], page=paging)
    favorites: list[dict[str, Any]] = []
    if principal.can("bookings:write"):
        favorites, _ = bookings.list_favorites(session, actor=principal, page=FAVORITES)
    now = utcnow()
    start = (now + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    defaults = {"start": _local(start, tz), "end": _local(start + timedelta(hours=4), tz)}
    for g in groups:
        g["devices"] = sorted({b["device_name"] for b in g["bookings"]})
        g["live"] = g["status"] in LIVE and g["end"] > now
        g["mine"] = g["user_id"] == principal.user_id
        g["defaults"] = _defaults(g, tz, now)
    return page(
        request,
        session,
        principal,
        "bookings/list.html",
        status=status,
        tab=tab,
        tabs=TAB_LABELS,
        groups=groups,
        total=total,
        paging=paging,
        favorites=favorites,
        defaults=defaults,
        labels=STATUS_LABELS,
        badges=STATUS_BADGES,
        errors=errors or {},
        favorite_id=favorite_id,
        values=values or {},
        conflicts=conflicts or [],
    )


def _defaults(group: dict[str, Any], tz: str, now: datetime) -> dict[str, str]:
    """Suggested times: an hour more for extend; the same slot a week on (until it is ahead)."""
    start, end = group["start"], group["end"]
    step = timedelta(days=7)
    while start <= now:
        start, end = start + step, end + step
    return {
        "extend_end": _local(max(group["end"], now) + timedelta(hours=1), tz),
        "rebook_start": _local(start, tz),
        "rebook_end": _local(end, tz),
    }


@router.get("/bookings")
def my_bookings(
    request: Request,
    session: DB,
    principal: SignedIn,
    paging: Paging,
    tab: Annotated[Tab, Query()] = "upcoming",
) -> Response:
    """My bookings (owned or shared with me): upcoming, active now, past; and my favorites."""
    return _list_page(request, session, principal, tab, paging)


# -- one group -----------------------------------------------------------------------------


def _group_page(
    request: Request,
    session: DB,
    principal: Principal,
    gid: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: str = "",
    values: dict[str, str] | None = None,
    conflicts: list[str] | None = None,
) -> Response:
    tz = lab_timezone(session)
    group = bookings.get_group(session, grouped_booking_id=gid, actor=principal)
    history = bookings.group_history(session, grouped_booking_id=gid, actor=principal)
    now = utcnow()
    mine = group["user_id"] == principal.user_id
    member = mine or principal.username in group["collaborators"]
    may_change = principal.can("bookings:write") and (member or principal.is_admin)
    live_rows = [b for b in group["bookings"] if b["status"] in LIVE]
    defaults = _defaults(group, tz, now)
    return page(
        request,
        session,
        principal,
        "bookings/detail.html",
        status=status,
        group=group,
        history=history,
        mine=mine,
        may_change=may_change,
        live=bool(live_rows) and group["end"] > now,
        defaults=defaults,
        labels=STATUS_LABELS,
        badges=STATUS_BADGES,
        errors=errors or {},
        form=form,
        values=values or {},
        conflicts=conflicts or [],
        devices=sorted({(b["device_id"], b["device_name"]) for b in group["bookings"]}),
    )


@router.get("/bookings/{grouped_booking_id}")
def booking_group(
    grouped_booking_id: str, request: Request, session: DB, principal: SignedIn
) -> Response:
    """One booking group: its devices and times, status, people, comment, history, actions."""
    return _group_page(request, session, principal, _group_id(grouped_booking_id))


def _refusal(
    request: Request,
    session: DB,
    principal: Principal,
    gid: str,
    exc: AppError,
    *,
    form: str,
    values: dict[str, str],
) -> Response:
    """Show a refused action on the group's page, with what it collides with."""
    refused(request, session, principal, exc)
    field = exc.details.get("field") if isinstance(exc.details, dict) else None
    errors = {field: sentence(exc.message)} if isinstance(field, str) and field in values else {}
    errors["__all__"] = sentence(exc.message)
    try:
        group = bookings.get_group(session, grouped_booking_id=gid, actor=principal)
        names = {b["device_id"]: b["device_name"] for b in group["bookings"]}
    except AppError:  # the group itself is out of reach: the plain error page says why
        raise exc from None
    return _group_page(
        request,
        session,
        principal,
        gid,
        status=exc.status,
        errors=errors,
        form=form,
        values=values,
        conflicts=conflict_lines(exc, names, lab_timezone(session)),
    )


def _invalid(
    request: Request,
    session: DB,
    principal: Principal,
    gid: str,
    errors: dict[str, str],
    *,
    form: str,
    values: dict[str, str],
) -> Response:
    return _group_page(
        request, session, principal, gid, status=422, errors=errors, form=form, values=values
    )


@router.post("/bookings/{grouped_booking_id}/cancel")
def cancel_group(
    grouped_booking_id: str, request: Request, session: DB, form: Form, principal: Booker
) -> Response:
    """Cancel a booking group (what is under way ends now; the waitlist moves up)."""
    gid = _group_id(grouped_booking_id)
    reason = text(form, "reason", limit=2000) or None
    try:
        bookings.cancel(session, actor=principal, grouped_booking_id=gid, reason=reason)
    except AppError as exc:
        return _refusal(
            request, session, principal, gid, exc, form="cancel", values={"reason": reason or ""}
        )
    return redirect(_back(form, f"/bookings/{gid}"), "Booking cancelled.")


def _back(form: FormData, default: str) -> str:
    """Where to go after an action: the list tab it was made from, or the group's page."""
    back = text(form, "back", limit=200)
    if re.fullmatch(r"/bookings(\?tab=(upcoming|active|past)(&offset=\d{1,7})?)?", back):
        return back
    return default


@router.post("/bookings/{grouped_booking_id}/extend")
def extend_group(
    grouped_booking_id: str, request: Request, session: DB, form: Form, principal: Booker
) -> Response:
    """Move the end of a group (later is checked for collisions, earlier frees the slot)."""
    gid = _group_id(grouped_booking_id)
    tz = lab_timezone(session)
    errors: dict[str, str] = {}
    values = {"end": text(form, "end", limit=40)}
    end = _moment(form, "end", tz, errors)
    if end is None:
        return _invalid(request, session, principal, gid, errors, form="extend", values=values)
    try:
        bookings.extend(session, end=end, actor=principal, grouped_booking_id=gid)
    except AppError as exc:
        return _refusal(request, session, principal, gid, exc, form="extend", values=values)
    return redirect(
        _back(form, f"/bookings/{gid}"), f"The booking now ends at {format_dt(end, tz)}."
    )


@router.post("/bookings/{grouped_booking_id}/rebook")
def rebook_group(
    grouped_booking_id: str, request: Request, session: DB, form: Form, principal: Booker
) -> Response:
    """Book the same devices again for a new window, as a new group."""
    gid = _group_id(grouped_booking_id)
    tz = lab_timezone(session)
    errors: dict[str, str] = {}
    values = {
        "start": text(form, "start", limit=40),
        "end": text(form, "end", limit=40),
        "waitlist": "1" if form.get("waitlist") else "",
    }
    start = _moment(form, "start", tz, errors)
    end = _moment(form, "end", tz, errors)
    if start is None or end is None:
        return _invalid(request, session, principal, gid, errors, form="rebook", values=values)
    try:
        body = RebookBody(start=start, end=end, waitlist=bool(values["waitlist"]))
        created = bookings.rebook(session, grouped_booking_id=gid, data=body, actor=principal)
    except ValidationError as exc:
        return _invalid(
            request,
            session,
            principal,
            gid,
            validation_errors(exc),
            form="rebook",
            values=values,
        )
    except AppError as exc:
        return _refusal(request, session, principal, gid, exc, form="rebook", values=values)
    new = created["grouped_booking_id"]
    label = STATUS_LABELS.get(created["status"], created["status"].lower())
    return redirect(f"/bookings/{new}", f"Booked again: the new booking is {label}.")


@router.post("/bookings/{grouped_booking_id}/favorite")
def save_favorite(
    grouped_booking_id: str, request: Request, session: DB, form: Form, principal: Booker
) -> Response:
    """Save a group's devices as a favorite, to book them again later in one step."""
    gid = _group_id(grouped_booking_id)
    values = {"name": text(form, "name", limit=300)}
    try:
        data = FavoriteCreate(name=values["name"], grouped_booking_id=gid)
        row = bookings.create_favorite(session, data=data, actor=principal)
    except ValidationError as exc:
        errors = validation_errors(exc)
        if "name" in errors:
            errors["name"] = "Give the favorite a name (at most 200 characters)"
        return _invalid(request, session, principal, gid, errors, form="favorite", values=values)
    except AppError as exc:
        return _refusal(request, session, principal, gid, exc, form="favorite", values=values)
    return redirect(
        _back(form, f"/bookings/{gid}"), f"Saved as favorite {row.name!r} (see My bookings)."
    )


@router.post("/bookings/{grouped_booking_id}/edit")
def edit_group(
    grouped_booking_id: str, request: Request, session: DB, form: Form, principal: Booker
) -> Response:
    """Change a group's comment and collaborators."""
    gid = _group_id(grouped_booking_id)
    values = {
        "comment": text(form, "comment", limit=2500),
        "collaborators": text(form, "collaborators", limit=3000),
    }
    names = [n for n in re.split(r"[\s,;]+", values["collaborators"]) if n]
    try:
        data = GroupUpdate(comment=values["comment"] or None, collaborators=names)
        bookings.update_group(session, grouped_booking_id=gid, data=data, actor=principal)
    except ValidationError as exc:
        errors = validation_errors(exc)
        if "collaborators" in errors:
            errors["collaborators"] = "List usernames separated by commas (at most 50)"
        return _invalid(request, session, principal, gid, errors, form="edit", values=values)
    except AppError as exc:
        return _refusal(request, session, principal, gid, exc, form="edit", values=values)
    return redirect(f"/bookings/{gid}", "Booking updated.")


# -- favorites -----------------------------------------------------------------------------


def _favorite_id(value: str) -> int:
    if not value.isdigit() or int(value) > MAX_ID:
        from labkeeper.core.errors import not_found

        raise not_found("favorite", value[:20])
    return int(value)


@router.post("/bookings/favorites/{favorite_id}/book")
def book_favorite(
    favorite_id: str, request: Request, session: DB, form: Form, principal: Booker
) -> Response:
    """Book a favorite's devices for a new window."""
    fid = _favorite_id(favorite_id)
    tz = lab_timezone(session)
    errors: dict[str, str] = {}
    values = {
        "start": text(form, "start", limit=40),
        "end": text(form, "end", limit=40),
        "comment": text(form, "comment", limit=2500),
        "waitlist": "1" if form.get("waitlist") else "",
    }
    start = _moment(form, "start", tz, errors)
    end = _moment(form, "end", tz, errors)
    paging = PageParams()
    if start is None or end is None:
        return _list_page(
            request,
            session,
            principal,
            "upcoming",
            paging,
            status=422,
            errors=errors,
            favorite_id=fid,
            values=values,
        )
    try:
        body = FavoriteBook(
            start=start,
            end=end,
            comment=values["comment"] or None,
            waitlist=bool(values["waitlist"]),
        )
        created = bookings.book_favorite(session, favorite_id=fid, data=body, actor=principal)
    except ValidationError as exc:
        return _list_page(
            request,
            session,
            principal,
            "upcoming",
            paging,
            status=422,
            errors=validation_errors(exc),
            favorite_id=fid,
            values=values,
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        favorites, _ = bookings.list_favorites(session, actor=principal, page=FAVORITES)
        names = {
            d["device_id"]: d["name"]
            for f in favorites
            if f["id"] == fid
            for d in f["devices"]
            if isinstance(d, dict) and "device_id" in d
        }
        return _list_page(
            request,
            session,
            principal,
            "upcoming",
            paging,
            status=exc.status,
            errors={"__all__": sentence(exc.message)},
            favorite_id=fid,
            values=values,
            conflicts=conflict_lines(exc, names, tz),
        )
    gid = created["grouped_booking_id"]
    label = STATUS_LABELS.get(created["status"], created["status"].lower())
    return redirect(f"/bookings/{gid}", f"Booked: the booking is {label}.")


@router.post("/bookings/favorites/{favorite_id}/delete")
def delete_favorite(
    favorite_id: str, request: Request, session: DB, form: Form, principal: Booker
) -> Response:
    """Forget a favorite."""
    fid = _favorite_id(favorite_id)
    try:
        bookings.delete_favorite(session, favorite_id=fid, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return _list_page(
            request,
            session,
            principal,
            "upcoming",
            PageParams(),
            status=exc.status,
            errors={"__all__": sentence(exc.message)},
        )
    return redirect("/bookings", "Favorite removed.")
