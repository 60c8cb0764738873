"""Configuration keeper: the encrypted credential store and stored configuration versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from labkeeper.core.db import Base
from labkeeper.core.models import CreatedAt, Timestamps
from labkeeper.core.time import UTCDateTime


class Credential(Timestamps, Base):
    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    username: Mapped[str] = mapped_column(String(100))
    # Fernet tokens (MultiFernet); never returned by the API.
    password_enc: Mapped[str | None] = mapped_column(Text)
    enable_secret_enc: Mapped[str | None] = mapped_column(Text)
    ssh_key_enc: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    success_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CredentialTag(CreatedAt, Base):
    __tablename__ = "credential_tags"
    __table_args__ = (UniqueConstraint("credential_id", "tag_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    credential_id: Mapped[int] = mapped_column(ForeignKey("credentials.id", ondelete="CASCADE"))
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    success_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)


class ConfigBackup(CreatedAt, Base):
    """One stored version of a device's configuration (stored only when it changed)."""

    __tablename__ = "config_backups"
    __table_args__ = (
        UniqueConstraint("device_id", "version"),
        Index("ix_config_backups_device_collected", "device_id", "collected_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text().with_variant(mysql.LONGTEXT(), "mysql"))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    lines_added: Mapped[int] = mapped_column(Integer, default=0)
    lines_removed: Mapped[int] = mapped_column(Integer, default=0)
    platform: Mapped[str | None] = mapped_column(String(50))
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    credential_id: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL")
    )
    job_log_id: Mapped[int | None] = mapped_column(ForeignKey("job_logs.id", ondelete="SET NULL"))
    is_automatic: Mapped[bool] = mapped_column(Boolean, default=True)
