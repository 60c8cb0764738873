"""Topologies people draw, their review, and the optical cross-connects that realise them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from labkeeper.core.db import Base
from labkeeper.core.models import Timestamps
from labkeeper.core.time import UTCDateTime


class Topology(Timestamps, Base):
    __tablename__ = "topologies"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # [{"id", "device_id", "kind", "params", "x", "y"}]
    nodes: Mapped[list[Any]] = mapped_column(JSON)
    # [{"id", "source", "target", "params"}]
    edges: Mapped[list[Any]] = mapped_column(JSON)


class TopologyReview(Timestamps, Base):
    __tablename__ = "topology_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    topology_id: Mapped[int] = mapped_column(
        ForeignKey("topologies.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(20), default="submitted")
    conflict_count: Mapped[int] = mapped_column(Integer, default=0)
    conflicts: Mapped[list[Any] | None] = mapped_column(JSON)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    notes: Mapped[str | None] = mapped_column(Text)


class CrossConnect(Timestamps, Base):
    """A patch labkeeper wants (desired_state) and what the switch has (actual_state)."""

    __tablename__ = "cross_connects"
    __table_args__ = (
        Index("ix_cross_connects_switch_ingress", "switch_name", "ingress_port"),
        Index("ix_cross_connects_desired", "desired_state", "switch_name"),
        # One row per patch and booking group: provisioning runs that race record it once.
        UniqueConstraint(
            "grouped_booking_id",
            "switch_name",
            "ingress_port",
            "egress_port",
            name="uq_cross_connects_patch",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    grouped_booking_id: Mapped[str | None] = mapped_column(String(64), index=True)
    topology_id: Mapped[int | None] = mapped_column(
        ForeignKey("topologies.id", ondelete="SET NULL")
    )
    switch_name: Mapped[str] = mapped_column(String(100))
    ingress_port: Mapped[int] = mapped_column(Integer)
    egress_port: Mapped[int] = mapped_column(Integer)
    desired_state: Mapped[str] = mapped_column(String(10), default="present")
    actual_state: Mapped[str] = mapped_column(String(10), default="unknown")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # After a failed attempt: not tried again before this time (exponential backoff).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
