"""Request and response bodies of topologies, their review, booking them, and optical patches."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from labkeeper.auth.schemas import Username
from labkeeper.core.schemas import AwareDatetime, Body, BodyId, Read

MAX_NODES = 500
MAX_EDGES = 1000
MAX_PARAMS_CHARS = 4000


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError) as exc:  # pragma: no cover (pydantic gives plain JSON)
        raise ValueError(f"params must be plain JSON: {exc}") from None
    if size > MAX_PARAMS_CHARS:
        raise ValueError(f"params may hold at most {MAX_PARAMS_CHARS} characters of JSON")
    return value


GraphId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
Kind = Annotated[str, StringConstraints(min_length=1, max_length=50)]
Params = Annotated[dict[str, Any], AfterValidator(_small_json)]
Coordinate = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=5000)]
Notes = Annotated[str, StringConstraints(max_length=2000)]
Comment = Annotated[str, StringConstraints(max_length=2000)]
GroupId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SwitchName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
SwitchPort = Annotated[int, Field(ge=1, le=100_000)]
ReviewStatus = Literal["submitted", "approved", "rejected"]
PatchState = Literal["present", "absent"]
PatchStatus = Literal["pending", "applied", "failed", "removing", "removed"]


class Node(Body):
    """A device in the drawing, with its place on the canvas."""

    id: GraphId
    device_id: BodyId
    kind: Kind | None = None
    params: Params = Field(default_factory=dict)
    x: Coordinate = 0.0
    y: Coordinate = 0.0


class Edge(Body):
    """A link from the output of one node's device to the input of another's."""

    id: GraphId
    source: GraphId
    target: GraphId
    params: Params = Field(default_factory=dict)


Nodes = Annotated[list[Node], Field(max_length=MAX_NODES)]
Edges = Annotated[list[Edge], Field(max_length=MAX_EDGES)]


class TopologyCreate(Body):
    name: Name
    description: Description | None = None
    nodes: Nodes = Field(default_factory=list)
    edges: Edges = Field(default_factory=list)


class TopologyUpdate(Body):
    """Fields to change; nodes and edges are replaced as a whole and validated together."""

    name: Name | None = None
    description: Description | None = None
    nodes: Nodes | None = None
    edges: Edges | None = None


class ReviewBrief(BaseModel):
    status: str
    conflict_count: int
    last_checked_at: datetime | None


class PatchPlan(BaseModel):
    """The switch patch an edge maps to."""

    edge: str
    switch_name: str
    ingress_port: int
    egress_port: int


class TopologyRead(BaseModel):
    id: int
    user_id: int
    username: str
    name: str
    description: str | None
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    review: ReviewBrief | None
    created_at: datetime
    updated_at: datetime


class TopologyDetail(TopologyRead):
    patches: list[PatchPlan]
    problems: list[dict[str, Any]]


class ReviewSubmit(Body):
    """The period the topology is wanted for; conflicts are computed for it."""

    window_start: AwareDatetime
    window_end: AwareDatetime


class ReviewDecision(Body):
    notes: Notes | None = None


class ReviewReject(Body):
    notes: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class ReviewRead(Read):
    id: int
    topology_id: int
    status: str
    conflict_count: int
    conflicts: list[dict[str, Any]] | None
    window_start: datetime | None
    window_end: datetime | None
    submitted_by: int | None
    last_checked_at: datetime | None
    resolved_at: datetime | None
    resolved_by: int | None
    notes: str | None
    created_at: datetime
    updated_at: datetime


class ReviewListItem(ReviewRead):
    topology_name: str
    owner_id: int
    owner_username: str


class TopologyBook(Body):
    """Book every device of the topology over one window, as one booking group."""

    start: AwareDatetime
    end: AwareDatetime
    comment: Comment | None = None
    collaborators: Annotated[list[Username], Field(max_length=50)] = []
    waitlist: bool = False


class CrossConnectCreate(Body):
    """A patch by hand during an active booking: name two booked devices, or the ports."""

    grouped_booking_id: GroupId
    source_device_id: BodyId | None = None
    target_device_id: BodyId | None = None
    switch_name: SwitchName | None = None
    ingress_port: SwitchPort | None = None
    egress_port: SwitchPort | None = None

    @model_validator(mode="after")
    def _one_form(self) -> CrossConnectCreate:
        by_device = self.source_device_id is not None or self.target_device_id is not None
        by_port = any(
            v is not None for v in (self.switch_name, self.ingress_port, self.egress_port)
        )
        if by_device == by_port:
            raise ValueError(
                "name either source_device_id and target_device_id, or switch_name, "
                "ingress_port and egress_port"
            )
        if by_device and (self.source_device_id is None or self.target_device_id is None):
            raise ValueError("name both source_device_id and target_device_id")
        if by_port and None in (self.switch_name, self.ingress_port, self.egress_port):
            raise ValueError("name switch_name, ingress_port and egress_port")
        return self


class CrossConnectRead(BaseModel):
    id: int
    grouped_booking_id: str | None
    topology_id: int | None
    switch_name: str
    ingress_port: int
    egress_port: int
    ingress_device: str | None
    egress_device: str | None
    desired_state: str
    actual_state: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_by: int | None
    applied_at: datetime | None
    removed_at: datetime | None
    created_at: datetime
    updated_at: datetime
