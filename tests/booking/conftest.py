"""Helpers of the booking tests: a small lab of devices, times, and booking through the API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from labkeeper.admin import service as settings_service
from labkeeper.admin.models import AuditLog
from labkeeper.booking.models import Booking
from labkeeper.core.audit import SYSTEM
from labkeeper.core.db import Database
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device, DeviceType

API = "/api/v1"


@dataclass
class Lab:
    """Six bookable routers, a device whose type cannot be booked, and a retired one."""

    devices: list[int]
    names: dict[int, str]
    type_id: int
    unschedulable: int
    retired: int


@pytest.fixture
def lab(db: Database) -> Lab:
    with db.scope() as s:
        router = DeviceType(name="router", category="infra", is_schedulable=True)
        panel = DeviceType(name="patch-panel", category="optical", is_schedulable=False)
        s.add_all([router, panel])
        s.flush()
        devices = [Device(name=f"r{i}", device_type_id=router.id) for i in range(6)]
        fixed = Device(name="panel", device_type_id=panel.id)
        old = Device(name="old", device_type_id=router.id, status="retired")
        s.add_all([*devices, fixed, old])
        s.flush()
        return Lab(
            devices=[d.id for d in devices],
            names={d.id: d.name for d in devices},
            type_id=router.id,
            unschedulable=fixed.id,
            retired=old.id,
        )


# A fixed hour tomorrow, so tests read as a timetable.
BASE = (utcnow() + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def at(hours: float) -> datetime:
    """BASE plus some hours."""
    return BASE + timedelta(hours=hours)


def iso(hours: float) -> str:
    """BASE plus some hours, as ISO 8601 with an offset."""
    return at(hours).isoformat()


def item(device: int, start: float, end: float) -> dict[str, Any]:
    """One device from BASE+start to BASE+end hours."""
    return {"device_id": device, "start": iso(start), "end": iso(end)}


@pytest.fixture
def book(client: Any) -> Callable[..., Any]:
    """POST /bookings as someone; checks the status code and returns the JSON."""

    def _book(account: Any, *items: dict[str, Any], expect: int = 201, **body: Any) -> Any:
        r = client.post(
            f"{API}/bookings", json={"items": list(items), **body}, headers=account.headers
        )
        assert r.status_code == expect, r.text
        return r.json()

    return _book


def principal(account: Any) -> Any:
    """The Principal of a test account, to call services as that person."""
    from labkeeper.auth.deps import Principal
    from labkeeper.auth.permissions import ROLE_PERMISSIONS

    return Principal(
        user_id=account.id,
        username=account.username,
        role=account.role,
        permissions=ROLE_PERMISSIONS[account.role],
    )


def set_approval_limits(db: Database, account: Any, admin: Any, **limits: int) -> None:
    """Give an approver approval limits (as an admin would)."""
    from labkeeper.auth import service as auth_service
    from labkeeper.auth.schemas import UserUpdate

    with db.scope() as s:
        auth_service.update_user(
            s,
            user_id=account.id,
            data=UserUpdate(approval_limits=limits),  # type: ignore[arg-type]
            actor=principal(admin),
        )


def set_setting(db: Database, key: str, value: Any) -> None:
    """Store a setting as the system."""
    with db.scope() as s:
        settings_service.put(s, key=key, value=value, actor=SYSTEM)


def statuses(db: Database, *ids: int) -> list[str]:
    """Current statuses of booking rows, in the order asked."""
    with db.scope(write=False) as s:
        found = dict(s.execute(select(Booking.id, Booking.status).where(Booking.id.in_(ids))).all())
    return [found[i] for i in ids]


def audit_actions(db: Database, prefix: str) -> list[AuditLog]:
    """Audit rows whose action starts with a prefix, oldest first."""
    with db.scope(write=False) as s:
        return list(
            s.scalars(
                select(AuditLog).where(AuditLog.action.startswith(prefix)).order_by(AuditLog.id)
            )
        )


def overlapping_holding_pairs(db: Database) -> int:
    """Pairs of PENDING/CONFIRMED/ACTIVE rows of one device whose times overlap."""
    a, b = Booking.__table__.alias("a"), Booking.__table__.alias("b")
    holding = ("PENDING", "CONFIRMED", "ACTIVE")
    with db.scope(write=False) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(a.join(b, a.c.device_id == b.c.device_id))
                .where(
                    a.c.id < b.c.id,
                    a.c.status.in_(holding),
                    b.c.status.in_(holding),
                    a.c.start_time < b.c.end_time,
                    b.c.start_time < a.c.end_time,
                )
            )
            or 0
        )
