"""Bookings: one row per device and time range, grouped; collaborators as rows; favorites."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from labkeeper.core.db import Base
from labkeeper.core.models import Timestamps
from labkeeper.core.time import UTCDateTime, utcnow


class BookingStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CONFLICTING = "CONFLICTING"


# Statuses that hold the device: no other booking may overlap them.
HOLDING_STATUSES = (BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.ACTIVE)


class Booking(Timestamps, Base):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint("end_time > start_time", name="time_order"),
        # A device's rows by end: "holding the device at or after a time" (conflicts, free now,
        # what comes next) is a short range however long its history.
        Index("ix_bookings_device_end", "device_id", "end_time", "start_time"),
        Index("ix_bookings_status_start", "status", "start_time"),
        Index("ix_bookings_status_end", "status", "end_time"),
        # Covers the quota count (user, recent start, status) without visiting the table.
        Index("ix_bookings_user_start_status", "user_id", "start_time", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    grouped_booking_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), default=BookingStatus.PENDING.value)
    comment: Mapped[str | None] = mapped_column(Text)
    topology_id: Mapped[int | None] = mapped_column(
        ForeignKey("topologies.id", ondelete="SET NULL")
    )
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_reason: Mapped[str | None] = mapped_column(Text)
    end_notice_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Which maintenance window clashed with this booking, when one was created over it.
    maintenance_conflict_id: Mapped[int | None] = mapped_column(
        ForeignKey("maintenance_windows.id", ondelete="SET NULL")
    )


class BookingCollaborator(Base):
    __tablename__ = "booking_collaborators"
    __table_args__ = (UniqueConstraint("grouped_booking_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    grouped_booking_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BookingFavorite(Timestamps, Base):
    __tablename__ = "booking_favorites"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    grouped_booking_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # [{"device_id": int, "name": str}] at the time it was saved.
    device_snapshot: Mapped[list[Any]] = mapped_column(JSON)
