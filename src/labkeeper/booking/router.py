"""Bookings, approvals, favorites, availability, the timeline, maintenance, calendar feeds
and the admin dashboard."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from labkeeper.auth.deps import Principal, require
from labkeeper.auth.permissions import AUTHENTICATED, PUBLIC
from labkeeper.booking import ics, maintenance, service
from labkeeper.booking.schemas import (
    BookingCreate,
    BookingCreated,
    BookingRead,
    CalendarFeed,
    CalendarFeedCreated,
    CancelBody,
    Dashboard,
    Decision,
    DecisionResult,
    Decline,
    DeviceAvailability,
    ExtendBody,
    FavoriteBook,
    FavoriteCreate,
    FavoriteRead,
    FreeDevice,
    GroupRead,
    GroupUpdate,
    MaintenanceCreate,
    MaintenanceCreated,
    MaintenanceRead,
    PendingGroup,
    PresetList,
    RebookBody,
    Status,
    Timeline,
)
from labkeeper.core.db import DbSession
from labkeeper.core.pagination import Page, PageParams, page_params
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import MAX_ID, AwareDatetime, Id

router = APIRouter()
DB = DbSession

GroupPath = Annotated[str, Path(min_length=1, max_length=64, description="grouped_booking_id")]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Sort = Literal[
    "start", "-start", "end", "-end", "created", "-created",
    "status", "-status", "device", "-device", "user", "-user",
]  # fmt: skip


def _page(items: list[Any], total: int, page: PageParams) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset}


# Filter dependencies do no I/O: async, so they resolve on the event loop without a thread hop.
async def _booking_filters(
    status: Annotated[list[Status] | None, Query(description="One or more statuses")] = None,
    device_id: QueryId = None,
    device_type_id: QueryId = None,
    user_id: QueryId = None,
    grouped_booking_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[AwareDatetime | None, Query(description="Overlapping from")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Overlapping until")] = None,
    conflicts_only: bool = False,
    sort: Sort = "-start",
) -> dict[str, Any]:
    return {
        "statuses": status,
        "device_id": device_id,
        "device_type_id": device_type_id,
        "user_id": user_id,
        "grouped_booking_id": grouped_booking_id,
        "since": since,
        "until": until,
        "conflicts_only": conflicts_only,
        "sort": sort,
    }


async def _device_filters(
    device_id: Annotated[list[int] | None, Query(description="Only these devices")] = None,
    device_type_id: QueryId = None,
    site_id: QueryId = None,
) -> dict[str, Any]:
    ids = [i for i in device_id or [] if 1 <= i <= MAX_ID] or None
    return {"device_ids": ids, "device_type_id": device_type_id, "site_id": site_id}


# -- bookings ------------------------------------------------------------------------------


@router.post("/bookings", response_model=BookingCreated, status_code=201, tags=["bookings"])
def create_booking(
    body: BookingCreate,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
) -> Any:
    """Book devices and time ranges as one group (all or none); 409 lists the collisions."""
    return service.create(session, data=body, actor=principal)


@router.get("/bookings", response_model=Page[BookingRead], tags=["bookings"])
def list_bookings(
    session: DB,
    _: Annotated[Principal, Depends(require("bookings:read"))],
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[dict[str, Any], Depends(_booking_filters)],
) -> Any:
    """All bookings, filtered (status, device, user, dates, conflicts), sorted, paginated."""
    items, total = service.list_bookings(session, filters=filters, page=page)
    return _page(items, total, page)


@router.get("/bookings/export.csv", tags=["bookings"], response_class=StreamingResponse)
def export_bookings(
    session: DB,
    _: Annotated[Principal, Depends(require("bookings:export"))],
    filters: Annotated[dict[str, Any], Depends(_booking_filters)],
) -> StreamingResponse:
    """The filtered bookings as CSV (at most 100,000 rows)."""
    rows = list(service.export_rows(session, filters=filters))

    def generate() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        for row in rows:
            writer.writerow(row)
            if buf.tell() > 64_000:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    return StreamingResponse(
        generate(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="bookings.csv"'},
    )


@router.get("/bookings/mine", response_model=Page[GroupRead], tags=["bookings"])
def my_bookings(
    session: DB,
    principal: Annotated[Principal, Depends(require(AUTHENTICATED))],
    page: Annotated[PageParams, Depends(page_params)],
    scope: Literal["upcoming", "past", "all"] = "upcoming",
) -> Any:
    """Booking groups you own or collaborate on: upcoming (soonest first), past, or all."""
    items, total = service.my_groups(session, actor=principal, scope=scope, page=page)
    return _page(items, total, page)


@router.get("/bookings/pending", response_model=Page[PendingGroup], tags=["approvals"])
def pending_bookings(
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:approve"))],
    page: Annotated[PageParams, Depends(page_params)],
) -> Any:
    """Requests waiting for approval, oldest first, marked if within your limits."""
    items, total = service.pending_groups(session, actor=principal, page=page)
    return _page(items, total, page)


@router.post("/bookings/approve", response_model=DecisionResult, tags=["approvals"])
def approve_bookings(
    body: Decision,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:approve"))],
) -> Any:
    """Approve pending bookings (by row or group, one or many) within your approval limits."""
    return service.approve(session, data=body, actor=principal)


@router.post("/bookings/decline", response_model=DecisionResult, tags=["approvals"])
def decline_bookings(
    body: Decline,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:approve"))],
) -> Any:
    """Decline bookings with a reason (one or many); their slots go to the waitlist."""
    return service.decline(session, data=body, actor=principal)


@router.get("/bookings/groups/{group_id}", response_model=GroupRead, tags=["bookings"])
def get_group(
    group_id: GroupPath,
    session: DB,
    principal: Annotated[Principal, Depends(require(AUTHENTICATED))],
) -> Any:
    """One booking group (owner, collaborators, or bookings:read)."""
    return service.get_group(session, grouped_booking_id=group_id, actor=principal)


@router.patch("/bookings/groups/{group_id}", response_model=GroupRead, tags=["bookings"])
def update_group(
    group_id: GroupPath,
    body: GroupUpdate,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
) -> Any:
    """Change a group's comment or replace its collaborators."""
    return service.update_group(session, grouped_booking_id=group_id, data=body, actor=principal)


@router.post("/bookings/groups/{group_id}/cancel", response_model=DecisionResult, tags=["bookings"])
def cancel_group(
    group_id: GroupPath,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
    body: CancelBody | None = None,
) -> Any:
    """Cancel a whole group (an active booking ends now); the waitlist moves up."""
    return service.cancel(
        session,
        grouped_booking_id=group_id,
        reason=body.reason if body else None,
        actor=principal,
    )


@router.post("/bookings/groups/{group_id}/extend", response_model=GroupRead, tags=["bookings"])
def extend_group(
    group_id: GroupPath,
    body: ExtendBody,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
) -> Any:
    """Move the end of a group's bookings: later is re-checked for conflicts, earlier frees."""
    return service.extend(session, grouped_booking_id=group_id, end=body.end, actor=principal)


@router.post(
    "/bookings/groups/{group_id}/rebook",
    response_model=BookingCreated,
    status_code=201,
    tags=["bookings"],
)
def rebook_group(
    group_id: GroupPath,
    body: RebookBody,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
) -> Any:
    """Book the same devices again at another time, as a new group."""
    return service.rebook(session, grouped_booking_id=group_id, data=body, actor=principal)


@router.get("/bookings/{booking_id}", response_model=BookingRead, tags=["bookings"])
def get_booking(
    booking_id: Id,
    session: DB,
    principal: Annotated[Principal, Depends(require(AUTHENTICATED))],
) -> Any:
    """One booking row (owner, collaborators, or bookings:read)."""
    return service.get_booking(session, booking_id=booking_id, actor=principal)


@router.post("/bookings/{booking_id}/cancel", response_model=DecisionResult, tags=["bookings"])
def cancel_booking(
    booking_id: Id,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
    body: CancelBody | None = None,
) -> Any:
    """Cancel one row of a group (an active one ends now); the waitlist moves up."""
    return service.cancel(
        session, booking_id=booking_id, reason=body.reason if body else None, actor=principal
    )


@router.post("/bookings/{booking_id}/extend", response_model=GroupRead, tags=["bookings"])
def extend_booking(
    booking_id: Id,
    body: ExtendBody,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
) -> Any:
    """Move the end of one row: later is re-checked for conflicts, earlier frees the slot."""
    return service.extend(session, booking_id=booking_id, end=body.end, actor=principal)


# -- favorites -----------------------------------------------------------------------------


@router.get("/favorites", response_model=Page[FavoriteRead], tags=["favorites"])
def list_favorites(
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
    page: Annotated[PageParams, Depends(page_params)],
) -> Any:
    """Your favorites, by name."""
    rows, total = service.list_favorites(session, actor=principal, page=page)
    return _page(rows, total, page)


@router.post("/favorites", response_model=FavoriteRead, status_code=201, tags=["favorites"])
def create_favorite(
    body: FavoriteCreate,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
) -> Any:
    """Save a group's devices (or a list of devices) under a name."""
    return service.favorite_view(service.create_favorite(session, data=body, actor=principal))


@router.delete("/favorites/{favorite_id}", status_code=204, tags=["favorites"])
def delete_favorite(
    favorite_id: Id,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
) -> Response:
    """Forget one of your favorites."""
    service.delete_favorite(session, favorite_id=favorite_id, actor=principal)
    return Response(status_code=204)


@router.post(
    "/favorites/{favorite_id}/book",
    response_model=BookingCreated,
    status_code=201,
    tags=["favorites"],
)
def book_favorite(
    favorite_id: Id,
    body: FavoriteBook,
    session: DB,
    principal: Annotated[Principal, Depends(require("bookings:write"))],
) -> Any:
    """Book a favorite's devices for a new time in one call."""
    return service.book_favorite(session, favorite_id=favorite_id, data=body, actor=principal)


# -- availability and timeline -------------------------------------------------------------


@router.get("/availability", response_model=Page[FreeDevice], tags=["availability"])
def free_devices(
    session: DB,
    _: Annotated[Principal, Depends(require("devices:read"))],
    start: AwareDatetime,
    end: AwareDatetime,
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[dict[str, Any], Depends(_device_filters)],
) -> Any:
    """Bookable devices that are free for the whole window."""
    items, total = service.free_devices(session, start=start, end=end, filters=filters, page=page)
    return _page(items, total, page)


@router.get("/availability/{device_id}", response_model=DeviceAvailability, tags=["availability"])
def device_availability(
    device_id: Id,
    session: DB,
    _: Annotated[Principal, Depends(require("devices:read"))],
    start: AwareDatetime,
    end: AwareDatetime,
) -> Any:
    """Whether one device is free for a window, and what occupies it."""
    return service.device_availability(session, device_id=device_id, start=start, end=end)


@router.get("/timeline", response_model=Timeline, tags=["availability"])
def timeline(
    session: DB,
    _: Annotated[Principal, Depends(require("devices:read"))],
    start: AwareDatetime,
    end: AwareDatetime,
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[dict[str, Any], Depends(_device_filters)],
) -> Any:
    """Bookings and maintenance per device for a window (a page of devices, by name)."""
    return service.timeline(session, start=start, end=end, filters=filters, page=page)


# -- maintenance ---------------------------------------------------------------------------


@router.get("/maintenance", response_model=Page[MaintenanceRead], tags=["maintenance"])
def list_maintenance(
    session: DB,
    _: Annotated[Principal, Depends(require("devices:read"))],
    page: Annotated[PageParams, Depends(page_params)],
    device_id: QueryId = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    include_cancelled: bool = False,
) -> Any:
    """Maintenance windows by start, filtered by device and time."""
    filters = {
        "device_id": device_id,
        "since": since,
        "until": until,
        "include_cancelled": include_cancelled,
    }
    items, total = maintenance.list_windows(session, filters=filters, page=page)
    return _page(items, total, page)


@router.get("/maintenance/presets", response_model=PresetList, tags=["maintenance"])
def maintenance_presets(
    session: DB,
    _: Annotated[Principal, Depends(require("devices:read"))],
    day: Annotated[date, Query(alias="date", description="A day in the lab's time zone")],
) -> Any:
    """The quick presets (all day, morning, afternoon, evening) of a day, in UTC."""
    return maintenance.presets(session, day=day)


@router.post(
    "/maintenance", response_model=MaintenanceCreated, status_code=201, tags=["maintenance"]
)
def create_maintenance(
    body: MaintenanceCreate,
    session: DB,
    principal: Annotated[Principal, Depends(require("devices:write"))],
) -> Any:
    """Put devices in maintenance (times or a preset); clashing bookings are marked."""
    return maintenance.create(session, data=body, actor=principal)


@router.delete("/maintenance/{window_id}", response_model=MaintenanceRead, tags=["maintenance"])
def cancel_maintenance(
    window_id: Id,
    session: DB,
    principal: Annotated[Principal, Depends(require("devices:write"))],
) -> Any:
    """Cancel a maintenance window: its marks are cleared and the waitlist moves up."""
    return maintenance.cancel(session, window_id=window_id, actor=principal)


# -- calendar feeds ------------------------------------------------------------------------


def _feed_url(request: Request, token: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/api/v1/calendar/{token}.ics"


@router.get("/calendar/feed", response_model=CalendarFeed, tags=["calendar"])
def calendar_feed(
    session: DB, principal: Annotated[Principal, Depends(require(AUTHENTICATED))]
) -> Any:
    """Whether you have a calendar feed (its secret URL is shown only when made)."""
    return {"active": ics.feed_active(session, actor=principal)}


@router.post(
    "/calendar/feed", response_model=CalendarFeedCreated, status_code=201, tags=["calendar"]
)
def rotate_calendar_feed(
    request: Request,
    session: DB,
    principal: Annotated[Principal, Depends(require(AUTHENTICATED))],
) -> Any:
    """Create your calendar feed, or replace its secret URL (the old one stops working)."""
    token = ics.rotate(session, actor=principal)
    return {"active": True, "url": _feed_url(request, token), "token": token}


@router.delete("/calendar/feed", status_code=204, tags=["calendar"])
def revoke_calendar_feed(
    session: DB, principal: Annotated[Principal, Depends(require(AUTHENTICATED))]
) -> Response:
    """Revoke your calendar feed: its URL stops working."""
    ics.revoke(session, actor=principal)
    return Response(status_code=204)


@router.get("/calendar/{secret}.ics", tags=["calendar"], response_class=Response)
def calendar(
    secret: Annotated[str, Path(min_length=10, max_length=100)],
    request: Request,
    session: DB,
    _: Annotated[Any, Depends(require(PUBLIC))],
) -> Response:
    """Your bookings as an ICS calendar, at a secret URL (no sign-in: the URL is the key)."""
    body = ics.feed(session, secret=secret, host=request.url.hostname or "labkeeper")
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, max-age=300"},
    )


# -- dashboard -----------------------------------------------------------------------------


@router.get("/dashboard", response_model=Dashboard, tags=["dashboard"])
def dashboard(session: DB, _: Annotated[Principal, Depends(require("bookings:read"))]) -> Any:
    """Pending approvals, conflicts, devices by status, use per device, recent activity."""
    return service.dashboard(session)
