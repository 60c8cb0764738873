"""Request and response bodies of credentials, stored configurations and scheduled jobs.

Secrets go in (`password`, `enable_secret`, `ssh_key`) and never come out: the read models only
say whether each secret is set.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from labkeeper.core.schemas import AwareDatetime, Body, BodyId, Read
from labkeeper.inventory.schemas import Line100, LongText, TagName

# Secrets keep their exact characters: no stripping, no length games beyond a sane bound.
Secret = Annotated[str, StringConstraints(min_length=1, max_length=1024, strip_whitespace=False)]
PrivateKey = Annotated[
    str, StringConstraints(min_length=1, max_length=16_384, strip_whitespace=False)
]
Username = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\s]+$")]
Priority = Annotated[int, Field(ge=0, le=10_000)]

JobType = Literal["backup", "reachability"]
TargetType = Literal["device", "tags", "all"]
ScheduleType = Literal["once", "interval", "cron", "daily", "weekly", "monthly"]
MIN_INTERVAL_SECONDS = 60
_TIME_OF_DAY = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")


def single_line(value: str) -> str:
    """Refuse control characters in a one-line text (queries, names)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("control characters are not allowed")
    return value


def _key_text(value: str) -> str:
    if "PRIVATE KEY" not in value:
        raise ValueError("an SSH key must be an OpenSSH or PEM private key")
    return value


SshKey = Annotated[PrivateKey, AfterValidator(_key_text)]


# -- credentials -------------------------------------------------------------------------------


class CredentialTagIn(Body):
    tag: TagName = Field(description="Name of an existing tag")
    priority: Priority = Field(default=100, description="Lower numbers are tried first")


CredentialTags = Annotated[list[CredentialTagIn], Field(max_length=200)]


class CredentialCreate(Body):
    name: Line100
    username: Username
    password: Secret
    enable_secret: Secret | None = None
    ssh_key: SshKey | None = None
    description: LongText | None = None
    tags: CredentialTags = Field(default_factory=list)


class CredentialUpdate(Body):
    """Fields to change; secrets are replaced when given, and null clears an optional one."""

    name: Line100 | None = None
    username: Username | None = None
    password: Secret | None = None
    enable_secret: Secret | None = None
    ssh_key: SshKey | None = None
    description: LongText | None = None
    tags: CredentialTags | None = Field(default=None, description="Replaces every tag link")

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("name", "username", "password", "tags"):
                if name in data and data[name] is None:
                    raise ValueError(f"{name} cannot be null")
        return data


class CredentialTagRead(Read):
    tag_id: int
    tag: str
    priority: int
    success_count: int
    failure_count: int


class CredentialRead(Read):
    id: int
    name: str
    username: str
    description: str | None
    is_system: bool
    has_password: bool
    has_enable_secret: bool
    has_ssh_key: bool
    success_count: int
    failure_count: int
    success_rate: float | None
    last_used_at: datetime | None
    last_success_at: datetime | None
    tags: list[CredentialTagRead]
    created_at: datetime
    updated_at: datetime


class CandidateRead(Read):
    """One credential a device's collection would try, in order."""

    credential_id: int
    name: str
    username: str
    tag: str | None
    priority: int | None
    success_rate: float | None
    last_good: bool


# -- stored configurations ---------------------------------------------------------------------


class BackupRead(Read):
    id: int
    device_id: int
    device_name: str
    version: int
    content_hash: str
    size_bytes: int
    line_count: int
    lines_added: int
    lines_removed: int
    platform: str | None
    collected_at: datetime
    credential_id: int | None
    job_log_id: int | None
    is_automatic: bool


class BackupDetail(BackupRead):
    content: str


class DiffRead(Read):
    from_id: int
    to_id: int
    from_version: int
    to_version: int
    from_device_id: int
    to_device_id: int
    lines_added: int
    lines_removed: int
    diff: str = Field(description="Unified diff, empty when the two versions are the same")


class SearchLine(Read):
    number: int
    text: str


class SearchHit(Read):
    device_id: int
    device_name: str
    backup_id: int
    version: int
    collected_at: datetime
    lines: list[SearchLine]


class BackupRunCreate(Body):
    """What to collect now: devices by id, devices with any of some tags, or every device."""

    device_ids: Annotated[list[BodyId], Field(max_length=10_000)] = Field(default_factory=list)
    tags: Annotated[list[TagName], Field(max_length=200)] = Field(default_factory=list)


# -- scheduled jobs ----------------------------------------------------------------------------


def _time_of_day(value: str) -> str:
    if not _TIME_OF_DAY.match(value):
        raise ValueError("time_of_day must be HH:MM (24-hour clock)")
    return value


TimeOfDay = Annotated[str, AfterValidator(_time_of_day)]
CronExpression = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class ScheduleFields(Body):
    """The schedule of a job; which fields count depends on `schedule_type`."""

    schedule_type: ScheduleType | None = None
    interval_seconds: Annotated[int, Field(ge=MIN_INTERVAL_SECONDS, le=366 * 86_400)] | None = None
    cron_expression: CronExpression | None = None
    run_at: AwareDatetime | None = None
    time_of_day: TimeOfDay | None = None
    day_of_week: Annotated[int, Field(ge=0, le=6, description="0 = Monday")] | None = None
    day_of_month: (
        Annotated[int, Field(ge=1, le=31, description="Clamped to the month's last day")] | None
    ) = None


class ScheduledJobCreate(ScheduleFields):
    name: Line100
    job_type: JobType = "backup"
    target_type: TargetType = "all"
    device_id: BodyId | None = None
    tags: Annotated[list[TagName], Field(max_length=200)] = Field(default_factory=list)
    schedule_type: ScheduleType
    enabled: bool = True


class ScheduledJobUpdate(ScheduleFields):
    """Fields to change; the schedule is recomputed at once."""

    name: Line100 | None = None
    job_type: JobType | None = None
    target_type: TargetType | None = None
    device_id: BodyId | None = None
    tags: Annotated[list[TagName], Field(max_length=200)] | None = None
    enabled: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("name", "job_type", "target_type", "schedule_type", "enabled", "tags"):
                if name in data and data[name] is None:
                    raise ValueError(f"{name} cannot be null")
        return data


class ScheduledJobRead(Read):
    id: int
    name: str
    job_type: str
    target_type: str
    device_id: int | None
    device_name: str | None
    tags: list[str]
    schedule_type: str
    interval_seconds: int | None
    cron_expression: str | None
    run_at: datetime | None
    time_of_day: str | None
    day_of_week: int | None
    day_of_month: int | None
    timezone: str
    enabled: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime
