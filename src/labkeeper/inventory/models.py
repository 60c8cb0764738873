"""Inventory: sites, manufacturers, device types, devices, tags, maintenance, ownership, health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from labkeeper.core.db import Base
from labkeeper.core.models import CreatedAt, Timestamps
from labkeeper.core.time import UTCDateTime, utcnow

DEVICE_TYPE_CATEGORIES = ("optical", "compute", "storage", "infra")
DEVICE_STATUSES = ("available", "maintenance", "offline", "unavailable", "retired")


class Site(CreatedAt, Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(255))


class Manufacturer(CreatedAt, Base):
    __tablename__ = "manufacturers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)


class DeviceType(CreatedAt, Base):
    __tablename__ = "device_types"
    __table_args__ = (
        CheckConstraint("category IN ('optical', 'compute', 'storage', 'infra')", name="category"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    category: Mapped[str] = mapped_column(String(20), default="infra")
    is_schedulable: Mapped[bool] = mapped_column(Boolean, default=True)
    has_ports: Mapped[bool] = mapped_column(Boolean, default=False)
    manufacturer_id: Mapped[int | None] = mapped_column(
        ForeignKey("manufacturers.id", ondelete="SET NULL")
    )
    # Default collection platform for devices of this type (a profile name, or "generic").
    platform: Mapped[str | None] = mapped_column(String(50))
    # Command the generic profile runs to print the configuration.
    config_command: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)


class Device(Timestamps, Base):
    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("switch_name", "switch_in_port"),
        UniqueConstraint("switch_name", "switch_out_port"),
        Index("ix_devices_status_type", "status", "device_type_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    hostname: Mapped[str | None] = mapped_column(String(255))
    mgmt_address: Mapped[str | None] = mapped_column(String(255), index=True)
    platform: Mapped[str | None] = mapped_column(String(50))
    ssh_port: Mapped[int] = mapped_column(Integer, default=22)
    serial: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="available")
    device_type_id: Mapped[int] = mapped_column(ForeignKey("device_types.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"))
    rack: Mapped[str | None] = mapped_column(String(50))
    notes: Mapped[str | None] = mapped_column(Text)
    # Where the device plugs into the optical switch (the seed's polatis_name/In_Port/Out_Port).
    switch_name: Mapped[str | None] = mapped_column(String(100))
    switch_in_port: Mapped[int | None] = mapped_column(Integer)
    switch_out_port: Mapped[int | None] = mapped_column(Integer)
    # Health and backup state, kept on the row so lists need no extra queries.
    reachability: Mapped[str] = mapped_column(String(20), default="unknown")
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_latency_ms: Mapped[float | None] = mapped_column(Float)
    last_backup_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_backup_status: Mapped[str | None] = mapped_column(String(30))
    last_credential_id: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL")
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    device_type: Mapped[DeviceType] = relationship(lazy="raise")
    site: Mapped[Site | None] = relationship(lazy="raise")
    tags: Mapped[list[Tag]] = relationship(secondary="device_tags", lazy="raise", viewonly=True)


class MaintenanceWindow(CreatedAt, Base):
    __tablename__ = "maintenance_windows"
    __table_args__ = (
        CheckConstraint("end_time > start_time", name="time_order"),
        Index("ix_maintenance_windows_device_time", "device_id", "start_time", "end_time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeviceHistory(Base):
    __tablename__ = "device_history"
    __table_args__ = (Index("ix_device_history_device_changed", "device_id", "changed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    field: Mapped[str] = mapped_column(String(50))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Tag(CreatedAt, Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    color: Mapped[str | None] = mapped_column(String(7))
    description: Mapped[str | None] = mapped_column(Text)


class DeviceTag(CreatedAt, Base):
    __tablename__ = "device_tags"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # "manual" when a person set it, "rule" when a tag rule did (rules only remove their own).
    source: Mapped[str] = mapped_column(String(10), default="manual")


class TagRule(Timestamps, Base):
    __tablename__ = "tag_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # {"op": "and"|"or", "rules": [...]} or {"field", "operator", "value"}.
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class DeviceOwnership(Base):
    __tablename__ = "device_ownership"
    __table_args__ = (Index("ix_device_ownership_device_revoked", "device_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    assigned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class DeviceHealthSnapshot(Base):
    __tablename__ = "device_health_snapshots"
    __table_args__ = (
        Index("ix_device_health_snapshots_device_created", "device_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    latency_ms: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
