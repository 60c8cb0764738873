"""Column helpers shared by every domain's models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Mapped, mapped_column

from labkeeper.core.time import UTCDateTime, utcnow


class CreatedAt:
    """Adds `created_at`, set by the application in UTC."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Timestamps(CreatedAt):
    """Adds `created_at` and `updated_at`."""

    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
