"""Request and response bodies of bookings, favorites, maintenance, availability and calendars."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from labkeeper.auth.schemas import Username
from labkeeper.core.schemas import AwareDatetime, Body, BodyId

MAX_ITEMS = 100
MAX_COLLABORATORS = 50
MAX_BULK = 500

Status = Literal[
    "PENDING", "CONFIRMED", "ACTIVE", "COMPLETED", "CANCELLED", "REJECTED", "EXPIRED", "CONFLICTING"
]
GroupId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Comment = Annotated[str, StringConstraints(max_length=2000)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
Preset = Literal["all_day", "morning", "afternoon", "evening"]
Collaborators = Annotated[list[Username], Field(max_length=MAX_COLLABORATORS)]


class BookingItem(Body):
    """One device for one time range."""

    device_id: BodyId
    start: AwareDatetime
    end: AwareDatetime


class BookingCreate(Body):
    """Book several devices and time ranges as one group: all rows or none."""

    items: Annotated[list[BookingItem], Field(min_length=1, max_length=MAX_ITEMS)]
    comment: Comment | None = None
    collaborators: Collaborators = []
    waitlist: bool = False
    topology_id: BodyId | None = None
    # The server decides these; they exist only so that a client sending them gets a refusal
    # with its own error code instead of a generic "extra field" one.
    status: SkipJsonSchema[Any] = None
    user_id: SkipJsonSchema[Any] = None


class BookingRow(BaseModel):
    """A booking row as answered when a group is created."""

    booking_id: int
    device_id: int
    start: datetime
    end: datetime
    status: str


class BookingCreated(BaseModel):
    grouped_booking_id: str
    status: str
    bookings: list[BookingRow]


class BookingRead(BaseModel):
    booking_id: int
    grouped_booking_id: str
    device_id: int
    device_name: str
    user_id: int
    username: str
    start: datetime
    end: datetime
    status: str
    comment: str | None
    topology_id: int | None
    decided_by: int | None
    decided_at: datetime | None
    decision_reason: str | None
    maintenance_conflict_id: int | None
    created_at: datetime
    updated_at: datetime


class GroupRead(BaseModel):
    grouped_booking_id: str
    status: str
    user_id: int
    username: str
    comment: str | None
    topology_id: int | None
    collaborators: list[str]
    start: datetime
    end: datetime
    bookings: list[BookingRead]
    created_at: datetime


class GroupUpdate(Body):
    """Change a group's comment or replace its collaborators."""

    comment: Comment | None = None
    collaborators: Collaborators | None = None


class ExtendBody(Body):
    """A new end time (later to extend, earlier to shorten)."""

    end: AwareDatetime


class RebookBody(Body):
    """Book the same devices again at another time."""

    start: AwareDatetime
    end: AwareDatetime
    waitlist: bool = False
    comment: Comment | None = None


class CancelBody(Body):
    reason: Comment | None = None


class Decision(Body):
    """Bookings to act on, by row id or by group."""

    booking_ids: Annotated[list[BodyId], Field(max_length=MAX_BULK)] = []
    grouped_booking_ids: Annotated[list[GroupId], Field(max_length=MAX_BULK)] = []

    @model_validator(mode="after")
    def _something(self) -> Decision:
        if not self.booking_ids and not self.grouped_booking_ids:
            raise ValueError("name at least one booking_id or grouped_booking_id")
        return self


class Decline(Decision):
    reason: Reason


class DecisionResult(BaseModel):
    status: str
    booking_ids: list[int]
    grouped_booking_ids: list[str]
    promoted: list[int] = []


class PendingGroup(BaseModel):
    grouped_booking_id: str
    user_id: int
    username: str
    comment: str | None
    devices: int
    hours: float
    start: datetime
    end: datetime
    booking_ids: list[int]
    within_my_limits: bool
    created_at: datetime


class FavoriteCreate(Body):
    """Save a group's devices (or a list of devices) under a name."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    grouped_booking_id: GroupId | None = None
    device_ids: Annotated[list[BodyId], Field(min_length=1, max_length=MAX_ITEMS)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FavoriteCreate:
        if (self.grouped_booking_id is None) == (self.device_ids is None):
            raise ValueError("give either grouped_booking_id or device_ids")
        return self


class FavoriteDevice(BaseModel):
    device_id: int
    name: str


class FavoriteRead(BaseModel):
    id: int
    name: str
    grouped_booking_id: str | None
    devices: list[FavoriteDevice]
    created_at: datetime
    updated_at: datetime


class FavoriteBook(Body):
    """Book a favorite's devices for a new time."""

    start: AwareDatetime
    end: AwareDatetime
    comment: Comment | None = None
    collaborators: Collaborators = []
    waitlist: bool = False


class Busy(BaseModel):
    """Something that occupies a device: a booking or a maintenance window."""

    kind: Literal["booking", "maintenance"]
    id: int
    start: datetime
    end: datetime
    status: str | None = None
    grouped_booking_id: str | None = None
    user_id: int | None = None
    username: str | None = None
    reason: str | None = None


class DeviceAvailability(BaseModel):
    device_id: int
    name: str
    bookable: bool
    free: bool
    busy: list[Busy]


class FreeDevice(BaseModel):
    device_id: int
    name: str
    device_type_id: int
    status: str


class TimelineDevice(BaseModel):
    device_id: int
    name: str
    device_type_id: int
    status: str
    bookable: bool
    bookings: list[Busy]
    maintenance: list[Busy]


class Timeline(BaseModel):
    start: datetime
    end: datetime
    items: list[TimelineDevice]
    total: int
    limit: int
    offset: int


class MaintenanceCreate(Body):
    """Maintenance on devices: explicit times, or a preset of a day in the lab's time zone."""

    device_ids: Annotated[list[BodyId], Field(min_length=1, max_length=MAX_BULK)]
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    preset: Preset | None = None
    date: dt.date | None = None
    reason: Comment | None = None

    @model_validator(mode="after")
    def _times_or_preset(self) -> MaintenanceCreate:
        explicit = self.start is not None and self.end is not None
        preset = self.preset is not None and self.date is not None
        if explicit == preset or (not explicit and (self.start or self.end)):
            raise ValueError("give either start and end, or preset and date")
        return self


class MaintenanceRead(BaseModel):
    id: int
    device_id: int
    device_name: str
    start: datetime
    end: datetime
    reason: str | None
    created_by: int | None
    cancelled_at: datetime | None
    created_at: datetime


class MaintenanceCreated(BaseModel):
    windows: list[MaintenanceRead]
    affected_booking_ids: list[int]


class PresetWindow(BaseModel):
    preset: Preset
    start: datetime
    end: datetime


class PresetList(BaseModel):
    date: dt.date
    timezone: str
    presets: list[PresetWindow]


class CalendarFeed(BaseModel):
    active: bool


class CalendarFeedCreated(CalendarFeed):
    url: str
    token: str


class Dashboard(BaseModel):
    generated_at: datetime
    pending_approvals: dict[str, Any]
    active_conflicts: dict[str, Any]
    devices: dict[str, Any]
    active_now: dict[str, Any]
    utilisation: list[dict[str, Any]]
    recent_activity: list[dict[str, Any]]
    new_users_7d: int
