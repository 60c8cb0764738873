"""Request and response bodies of sites, manufacturers, device types, devices, tags and rules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from labkeeper.core.schemas import Body, Read

Category = Literal["optical", "compute", "storage", "infra"]
DeviceStatus = Literal["available", "maintenance", "offline", "unavailable", "retired"]
DeviceSort = Literal["name", "-name", "status", "-status", "created_at", "-created_at"]
Reachability = Literal["up", "down", "unknown"]

_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}
_MULTILINE_OK = {"\t", "\n", "\r"}


def _single_line(value: str) -> str:
    if any(ch in _CONTROL for ch in value):
        raise ValueError("control characters are not allowed")
    return value


def _multi_line(value: str) -> str:
    if any(ch in _CONTROL and ch not in _MULTILINE_OK for ch in value):
        raise ValueError("control characters other than tabs and newlines are not allowed")
    return value


# One-line, non-empty strings of bounded length.
Line50 = Annotated[
    str, StringConstraints(min_length=1, max_length=50), AfterValidator(_single_line)
]
Line100 = Annotated[
    str, StringConstraints(min_length=1, max_length=100), AfterValidator(_single_line)
]
Line255 = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(_single_line)
]

LongText = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_multi_line)]
# Management address or host name: IPv4, IPv6 (optionally bracketed or scoped) or a DNS name.
Address = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._:%\[\]-]+$"),
]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]
Port = Annotated[int, Field(ge=1, le=65535)]
SwitchPort = Annotated[int, Field(ge=1, le=100_000)]
TagName = Line50
TagNames = Annotated[list[TagName], Field(max_length=200)]


def _refuse_nulls(data: Any, fields: tuple[str, ...]) -> Any:
    # PATCH bodies: leaving a field out keeps it, but null cannot clear a required value.
    if isinstance(data, dict):
        for name in fields:
            if name in data and data[name] is None:
                raise ValueError(f"{name} cannot be null")
    return data


# -- sites and manufacturers -------------------------------------------------------------------


class SiteCreate(Body):
    name: Line100
    description: LongText | None = None
    address: Line255 | None = None


class SiteUpdate(Body):
    name: Line100 | None = None
    description: LongText | None = None
    address: Line255 | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _refuse_nulls(data, ("name",))


class SiteRead(Read):
    id: int
    name: str
    description: str | None
    address: str | None
    created_at: datetime
    device_count: int = 0


class ManufacturerCreate(Body):
    name: Line100
    description: LongText | None = None


class ManufacturerUpdate(Body):
    name: Line100 | None = None
    description: LongText | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _refuse_nulls(data, ("name",))


class ManufacturerRead(Read):
    id: int
    name: str
    description: str | None
    created_at: datetime
    device_type_count: int = 0


# -- device types ------------------------------------------------------------------------------


class DeviceTypeCreate(Body):
    name: Line100
    category: Category
    is_schedulable: bool = True
    has_ports: bool = False
    manufacturer: Line100 | None = Field(
        default=None, description="Name of an existing manufacturer"
    )
    platform: Line50 | None = None
    config_command: Line255 | None = None
    description: LongText | None = None


class DeviceTypeUpdate(Body):
    name: Line100 | None = None
    category: Category | None = None
    is_schedulable: bool | None = None
    has_ports: bool | None = None
    manufacturer: Line100 | None = None
    platform: Line50 | None = None
    config_command: Line255 | None = None
    description: LongText | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _refuse_nulls(data, ("name", "category", "is_schedulable", "has_ports"))


class DeviceTypeRead(Read):
    id: int
    name: str
    category: str
    is_schedulable: bool
    has_ports: bool
    manufacturer_id: int | None
    manufacturer: str | None
    platform: str | None
    config_command: str | None
    description: str | None
    created_at: datetime
    device_count: int = 0


# -- devices -----------------------------------------------------------------------------------


class DeviceCreate(Body):
    name: Line100
    device_type: Line100 = Field(description="Name of an existing device type")
    platform: Line50 | None = None
    mgmt_address: Address | None = None
    ssh_port: Port = 22
    switch_name: Line100 | None = None
    switch_in_port: SwitchPort | None = None
    switch_out_port: SwitchPort | None = None
    tags: TagNames = Field(default_factory=list, description="Names of existing tags")
    hostname: Address | None = None
    serial: Line100 | None = None
    model: Line100 | None = None
    site: Line100 | None = Field(default=None, description="Name of an existing site")
    rack: Line50 | None = None
    notes: LongText | None = None
    status: DeviceStatus = "available"


class DeviceUpdate(Body):
    """Fields to change; a field left out keeps its value, null clears an optional one."""

    name: Line100 | None = None
    device_type: Line100 | None = None
    platform: Line50 | None = None
    mgmt_address: Address | None = None
    ssh_port: Port | None = None
    switch_name: Line100 | None = None
    switch_in_port: SwitchPort | None = None
    switch_out_port: SwitchPort | None = None
    hostname: Address | None = None
    serial: Line100 | None = None
    model: Line100 | None = None
    site: Line100 | None = None
    rack: Line50 | None = None
    notes: LongText | None = None
    status: DeviceStatus | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _refuse_nulls(data, ("name", "device_type", "ssh_port", "status"))


class TypeBrief(Read):
    id: int
    name: str
    category: str
    is_schedulable: bool
    has_ports: bool


class SiteBrief(Read):
    id: int
    name: str


class DeviceTagRead(Read):
    id: int
    name: str
    color: str | None
    source: str


class OwnerBrief(Read):
    user_id: int
    username: str
    assigned_at: datetime


class DeviceRead(Read):
    id: int
    name: str
    hostname: str | None
    mgmt_address: str | None
    platform: str | None
    ssh_port: int
    serial: str | None
    model: str | None
    status: str
    device_type: TypeBrief
    site: SiteBrief | None
    rack: str | None
    notes: str | None
    switch_name: str | None
    switch_in_port: int | None
    switch_out_port: int | None
    reachability: str
    last_seen_at: datetime | None
    last_latency_ms: float | None
    last_backup_at: datetime | None
    last_backup_status: str | None
    tags: list[DeviceTagRead]
    owners: list[OwnerBrief]
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class DeviceBrief(Read):
    id: int
    name: str
    mgmt_address: str | None
    status: str
    device_type: str
    site: str | None


class HistoryRead(Read):
    id: int
    device_id: int
    field: str
    old_value: str | None
    new_value: str | None
    changed_by: int | None
    changed_by_username: str | None
    changed_at: datetime


class HealthRead(Read):
    id: int
    device_id: int
    status: str
    heartbeat_at: datetime | None
    latency_ms: float | None
    metrics: dict[str, Any] | None
    created_at: datetime


# -- ownership ---------------------------------------------------------------------------------


class OwnerAssign(Body):
    username: Line50


class OwnershipRead(Read):
    id: int
    device_id: int
    owner_id: int
    username: str
    assigned_by: int | None
    assigned_at: datetime
    revoked_at: datetime | None
    revoked_by: int | None


# -- tags --------------------------------------------------------------------------------------


class TagCreate(Body):
    name: TagName
    color: Color | None = None
    description: LongText | None = None


class TagUpdate(Body):
    name: TagName | None = None
    color: Color | None = None
    description: LongText | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _refuse_nulls(data, ("name",))


class TagRead(Read):
    id: int
    name: str
    color: str | None
    description: str | None
    created_at: datetime
    device_count: int = 0
    rule_count: int = 0


class DeviceTagsSet(Body):
    tags: TagNames


class DeviceTagAdd(Body):
    tag: TagName


# -- tag rules ---------------------------------------------------------------------------------

RuleTree = Annotated[
    dict[str, Any],
    Field(
        description='A group {"op": "and"|"or", "rules": [...]} or a leaf '
        '{"field", "operator", "value", "negate"?}',
        examples=[{"field": "mgmt_address", "operator": "in_subnet", "value": "10.0.0.0/8"}],
    ),
]


class TagRuleCreate(Body):
    tag: TagName = Field(description="Name of the tag the rule applies")
    name: Line100
    rule: RuleTree
    is_active: bool = True


class TagRuleUpdate(Body):
    tag: TagName | None = None
    name: Line100 | None = None
    rule: RuleTree | None = None
    is_active: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _refuse_nulls(data, ("tag", "name", "rule", "is_active"))


class TagRuleRead(Read):
    id: int
    tag_id: int
    tag: str
    name: str
    rule: dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime


class TagRuleSaved(TagRuleRead):
    tagged: int = Field(description="Devices that got the tag from rules by this change")
    untagged: int = Field(description="Devices whose rule-given tag this change removed")


class RulePreview(Body):
    rule: RuleTree
