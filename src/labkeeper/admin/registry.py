"""The typed registry of known settings: key, type, default, category, sensitivity.

Stored rows only hold overrides; a key never written reads as its default. Unknown keys are
refused, and every value is validated against its type before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, TypeAdapter


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as Europe/Dublin"
        ) from exc
    return value


def _webhook(value: str | None) -> str | None:
    if value and not value.startswith(("https://", "http://")):
        raise ValueError("a webhook must be an http(s) URL")
    return value or None


Timezone = Annotated[str, AfterValidator(_timezone)]
Webhook = Annotated[str | None, AfterValidator(_webhook)]


@dataclass(frozen=True)
class SettingDef:
    """One known setting."""

    key: str
    type: Any
    default: Any
    description: str
    sensitive: bool = False
    adapter: TypeAdapter[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapter", TypeAdapter(self.type))

    @property
    def category(self) -> str:
        """The part of the key before the first dot."""
        return self.key.split(".", 1)[0]

    def validate(self, value: Any) -> Any:
        """The value converted to this setting's type, or pydantic.ValidationError."""
        return self.adapter.validate_python(value, strict=False)


def _defs(*defs: SettingDef) -> dict[str, SettingDef]:
    return {d.key: d for d in defs}


Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]

REGISTRY: dict[str, SettingDef] = _defs(
    SettingDef(
        "general.lab_name",
        Annotated[str, Field(min_length=1, max_length=100)],
        "labkeeper",
        "Name shown in the page header and notifications",
    ),
    SettingDef(
        "general.lab_timezone",
        Timezone,
        "UTC",
        "Time zone used to display times and for day-based presets",
    ),
    SettingDef(
        "general.load_demo_on_first_run",
        bool,
        True,
        "Load the demo lab when `make run` finds an empty database",
    ),
    SettingDef("booking.max_duration_hours", Positive, 168, "Longest booking allowed"),
    SettingDef("booking.max_notice_days", Positive, 90, "How far ahead a booking may start"),
    SettingDef(
        "booking.min_notice_minutes",
        NonNegative,
        0,
        "How soon before its start a booking must be made",
    ),
    SettingDef(
        "booking.max_active_per_user",
        Positive,
        50,
        "Bookings one user may hold at once (pending, confirmed or active)",
    ),
    SettingDef(
        "booking.slot_minutes",
        Annotated[int, Field(ge=5, le=1440)],
        60,
        "Granularity of the timeline grid",
    ),
    SettingDef(
        "booking.end_notice_minutes",
        NonNegative,
        15,
        "Minutes before the end at which owners are told their booking ends",
    ),
    SettingDef(
        "approval.mode",
        Literal["auto", "always", "over_limits"],
        "over_limits",
        "auto: confirm every booking; always: every booking waits for an approver; "
        "over_limits: confirm within the limits below, otherwise wait",
    ),
    SettingDef(
        "approval.auto_max_hours",
        Positive,
        24,
        "Longest booking confirmed without approval (over_limits mode)",
    ),
    SettingDef(
        "approval.auto_max_devices",
        Positive,
        4,
        "Most devices in a group confirmed without approval (over_limits mode)",
    ),
    SettingDef(
        "security.password_min_length",
        Annotated[int, Field(ge=8, le=128)],
        10,
        "Shortest password accepted",
    ),
    SettingDef(
        "security.password_require_mixed",
        bool,
        True,
        "Passwords need both letters and digits or symbols",
    ),
    SettingDef(
        "security.lockout_threshold",
        Positive,
        5,
        "Failed logins in a row before an account is locked",
    ),
    SettingDef("security.lockout_minutes", Positive, 15, "How long a locked account stays locked"),
    SettingDef(
        "security.session_hours", Positive, 12, "Lifetime of a sign-in (cookie and login token)"
    ),
    SettingDef("security.token_max_days", Positive, 365, "Longest lifetime of an API token"),
    SettingDef("security.invitation_days", Positive, 7, "Days an invitation stays valid"),
    SettingDef(
        "notifications.discord_booking_webhook",
        Webhook,
        None,
        "Discord webhook of the booking channel",
        sensitive=True,
    ),
    SettingDef(
        "notifications.discord_admin_webhook",
        Webhook,
        None,
        "Discord webhook of the admin channel",
        sensitive=True,
    ),
    SettingDef("notifications.smtp_host", str | None, None, "SMTP server for email notices"),
    SettingDef("notifications.smtp_port", Annotated[int, Field(ge=1, le=65535)], 587, "SMTP port"),
    SettingDef("notifications.smtp_username", str | None, None, "SMTP login"),
    SettingDef("notifications.smtp_password", str | None, None, "SMTP password", sensitive=True),
    SettingDef("notifications.smtp_from", str | None, None, "Sender address of email notices"),
    SettingDef("notifications.smtp_starttls", bool, True, "Use STARTTLS with the SMTP server"),
    SettingDef(
        "notifications.retry_attempts",
        Annotated[int, Field(ge=1, le=10)],
        4,
        "Delivery attempts of one notification (webhook or email) before it is given up",
    ),
    SettingDef(
        "notifications.retry_backoff_seconds",
        Annotated[float, Field(ge=0, le=60)],
        2.0,
        "Wait before the second delivery attempt; doubled for each further attempt",
    ),
    SettingDef(
        "backup.concurrency", Annotated[int, Field(ge=1, le=1000)], 100, "Devices collected at once"
    ),
    SettingDef(
        "backup.device_timeout_seconds",
        Annotated[int, Field(ge=1, le=600)],
        20,
        "Time limit for one device",
    ),
    SettingDef(
        "backup.run_timeout_seconds",
        Annotated[int, Field(ge=10)],
        1800,
        "Time limit for one whole run",
    ),
    SettingDef(
        "backup.retries", Annotated[int, Field(ge=0, le=10)], 2, "Retries for transient failures"
    ),
    SettingDef("backup.retention_versions", Positive, 100, "Versions kept per device"),
    SettingDef("backup.retention_days", Positive, 365, "Days a superseded version is kept"),
    SettingDef(
        "backup.unit_size",
        Annotated[int, Field(ge=1, le=1000)],
        1,
        "Redis mode: devices per unit of work handed to a worker (1: every device is a unit)",
    ),
    SettingDef("jobs.log_retention_days", Positive, 90, "Days job logs are kept"),
    SettingDef(
        "optical.timeout_seconds",
        Annotated[float, Field(gt=0, le=120)],
        10.0,
        "Time limit of one NETCONF request to an optical switch",
    ),
    SettingDef(
        "optical.retry_backoff_seconds",
        Annotated[float, Field(ge=0.5, le=600)],
        2.0,
        "Wait before retrying a failed patch; doubled for each further attempt",
    ),
    SettingDef(
        "optical.retry_max_backoff_seconds",
        Annotated[int, Field(ge=1, le=86400)],
        300,
        "Longest wait between two attempts at a failing patch",
    ),
    SettingDef(
        "optical.provision_interval_seconds",
        Annotated[int, Field(ge=1, le=300)],
        2,
        "How often pending optical patches are looked for (each look is a job run)",
    ),
    SettingDef(
        "optical.reconcile_interval_seconds",
        Annotated[int, Field(ge=10, le=86400)],
        60,
        "How often every optical switch is compared with the database and converged",
    ),
    SettingDef(
        "health.interval_seconds", Annotated[int, Field(ge=10)], 300, "How often devices are probed"
    ),
    SettingDef(
        "health.timeout_seconds",
        Annotated[float, Field(gt=0, le=60)],
        3.0,
        "Time limit of one probe",
    ),
    SettingDef(
        "health.concurrency",
        Annotated[int, Field(ge=1, le=1000)],
        100,
        "Devices probed at once",
    ),
)
