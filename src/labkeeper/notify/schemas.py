"""Request and response bodies of notifications."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from labkeeper.core.schemas import Body


class TestNotification(Body):
    """Which channel to try."""

    channel: Literal["discord_booking", "discord_admin", "email"]


class TestQueued(BaseModel):
    job_log_id: int
