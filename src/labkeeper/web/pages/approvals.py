"""Approvers' queues: booking requests waiting for a decision, and conflicts to resolve.

`/admin/approvals` lists pending groups (oldest first) with bulk approve and decline-with-reason;
`/admin/conflicts` lists waitlisted rows and holding rows that overlap maintenance, with what
each collides with, and lets an approver decline either side. Every action goes through the
booking service (`approve`, `decline`), so approval limits and transitions are the API's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from labkeeper.auth.deps import Principal, require
from labkeeper.booking import repository as booking_repository
from labkeeper.booking import service as bookings
from labkeeper.booking.schemas import MAX_BULK, Decision, Decline
from labkeeper.core.errors import AppError
from labkeeper.core.routing import APIRouter
from labkeeper.core.time import utcnow
from labkeeper.web.deps import DB, Form, Paging, refused
from labkeeper.web.render import page, redirect, sentence, text, validation_errors

router = APIRouter(include_in_schema=False)

Approver = Annotated[Principal, Depends(require("bookings:approve"))]


def _ids(form: FormData, name: str = "booking") -> list[int]:
    """Booking ids of the ticked rows (each checkbox carries a group's ids, comma-separated)."""
    out: list[int] = []
    for value in form.getlist(name):
        if not isinstance(value, str):
            continue
        for part in value.split(","):
            part = part.strip()
            if part.isdigit() and len(part) <= 12:
                out.append(int(part))
    return list(dict.fromkeys(out))[: MAX_BULK + 1]


def _approvals_page(
    request: Request,
    session: DB,
    principal: Principal,
    paging: Any,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    chosen: list[int] | None = None,
    reason: str = "",
) -> Response:
    requests, total = bookings.pending_groups(session, actor=principal, page=paging)
    groups = {
        g["grouped_booking_id"]: g
        for g in bookings.groups_view(session, [r["grouped_booking_id"] for r in requests])
    }
    for r in requests:
        members = groups.get(r["grouped_booking_id"], {}).get("bookings", [])
        pending = set(r["booking_ids"])
        r["device_names"] = sorted(
            {b["device_name"] for b in members if b["booking_id"] in pending}
        )
        r["collaborators"] = groups.get(r["grouped_booking_id"], {}).get("collaborators", [])
        r["value"] = ",".join(map(str, r["booking_ids"]))
        r["checked"] = bool(chosen) and set(r["booking_ids"]) <= set(chosen or [])
    return page(
        request,
        session,
        principal,
        "admin/approvals.html",
        status=status,
        requests=requests,
        total=total,
        paging=paging,
        errors=errors or {},
        values={"reason": reason},
    )


@router.get("/admin/approvals")
def approvals(request: Request, session: DB, principal: Approver, paging: Paging) -> Response:
    """Booking requests waiting for approval, oldest first."""
    return _approvals_page(request, session, principal, paging)


def _decide(
    request: Request,
    session: DB,
    form: FormData,
    principal: Principal,
    paging: Any,
    *,
    decline: bool,
) -> Response:
    ids = _ids(form)
    reason = text(form, "reason", limit=1000)
    try:
        data: Decision = (
            Decline(booking_ids=ids, reason=reason) if decline else Decision(booking_ids=ids)
        )
    except ValidationError as exc:
        errors = validation_errors(exc)
        if "reason" in errors:
            errors["reason"] = "Say why these requests are declined; the requester sees it"
        if "booking_ids" in errors or "__all__" in errors:
            errors.pop("booking_ids", None)
            errors["__all__"] = (
                f"Tick at least one request (at most {MAX_BULK})"
                if len(ids) <= MAX_BULK
                else f"Act on at most {MAX_BULK} bookings at once"
            )
        return _approvals_page(
            request,
            session,
            principal,
            paging,
            status=422,
            errors=errors,
            chosen=ids,
            reason=reason,
        )
    try:
        if isinstance(data, Decline):
            done = bookings.decline(session, data=data, actor=principal)
        else:
            done = bookings.approve(session, data=data, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return _approvals_page(
            request,
            session,
            principal,
            paging,
            status=exc.status,
            errors={"__all__": sentence(exc.message)},
            chosen=ids,
            reason=reason,
        )
    count = len(done["grouped_booking_ids"])
    what = "Declined" if decline else "Approved"
    return redirect("/admin/approvals", f"{what} {count} request{'s' if count != 1 else ''}.")


@router.post("/admin/approvals/approve")
def approve(
    request: Request, session: DB, form: Form, principal: Approver, paging: Paging
) -> Response:
    """Confirm the ticked requests."""
    return _decide(request, session, form, principal, paging, decline=False)


@router.post("/admin/approvals/decline")
def decline(
    request: Request, session: DB, form: Form, principal: Approver, paging: Paging
) -> Response:
    """Reject the ticked requests with a reason."""
    return _decide(request, session, form, principal, paging, decline=True)


# -- conflicts ------------------------------------------------------------------------------


def _conflicts_page(
    request: Request,
    session: DB,
    principal: Principal,
    paging: Any,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
) -> Response:
    now = utcnow()
    rows, total = bookings.list_bookings(
        session,
        filters={"conflicts_only": True, "since": now, "sort": "start"},
        page=paging,
    )
    # What each row collides with: one query for the page.
    found = booking_repository.overlaps(
        session,
        [(r["device_id"], r["start"], r["end"]) for r in rows],
        exclude_ids=[r["booking_id"] for r in rows],
    )
    for r in rows:
        r["blockers"] = [
            {
                "kind": o.kind,
                "id": o.id,
                "status": o.status,
                "username": o.username,
                "reason": o.reason,
                "start": _aware(o.start_time),
                "end": _aware(o.end_time),
                "declinable": o.kind == "booking" and o.status in ("PENDING", "CONFIRMED"),
            }
            for o in found
            if o.device_id == r["device_id"]
            and _aware(o.start_time) < r["end"]
            and _aware(o.end_time) > r["start"]
        ]
    return page(
        request,
        session,
        principal,
        "admin/conflicts.html",
        status=status,
        rows=rows,
        total=total,
        paging=paging,
        errors=errors or {},
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/admin/conflicts")
def conflicts(request: Request, session: DB, principal: Approver, paging: Paging) -> Response:
    """Waitlisted bookings and bookings overlapping maintenance, with what blocks them."""
    return _conflicts_page(request, session, principal, paging)


@router.post("/admin/conflicts/decline")
def decline_conflict(
    request: Request, session: DB, form: Form, principal: Approver, paging: Paging
) -> Response:
    """Decline one booking (a waitlisted one, or one that blocks it) with a reason."""
    ids = _ids(form)
    reason = text(form, "reason", limit=1000)
    try:
        data = Decline(booking_ids=ids[:1], reason=reason)
    except ValidationError as exc:
        errors = validation_errors(exc)
        message = (
            "Say why the booking is declined; its owner sees it"
            if "reason" in errors
            else "Choose a booking to decline"
        )
        return _conflicts_page(
            request, session, principal, paging, status=422, errors={"__all__": message}
        )
    try:
        done = bookings.decline(session, data=data, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return _conflicts_page(
            request,
            session,
            principal,
            paging,
            status=exc.status,
            errors={"__all__": sentence(exc.message)},
        )
    promoted = len(done["promoted"])
    extra = (
        f" {promoted} waitlisted booking{'s' if promoted != 1 else ''} moved up."
        if promoted
        else ""
    )
    return redirect("/admin/conflicts", f"Declined booking {ids[0]}.{extra}")
