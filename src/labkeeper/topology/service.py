"""Topologies: drawing and validating them, their review and conflicts, booking them, and the
optical patches made by hand during a booking. Provisioning itself is in `provision.py`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from labkeeper.auth.deps import Principal
from labkeeper.booking import service as bookings
from labkeeper.booking.repository import NOT_BOOKABLE
from labkeeper.booking.schemas import MAX_ITEMS, BookingCreate, BookingItem
from labkeeper.core import audit
from labkeeper.core.errors import (
    AlreadyExists,
    Conflict,
    Invalid,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    not_found,
)
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.time import as_utc, utcnow
from labkeeper.topology import repository
from labkeeper.topology.models import CrossConnect, Topology, TopologyReview
from labkeeper.topology.provision import (
    ABSENT,
    PRESENT,
    UNKNOWN,
    Patch,
    PortedDevice,
    map_graph,
    ported_devices,
    request_provisioning,
)
from labkeeper.topology.schemas import (
    CrossConnectCreate,
    ReviewDecision,
    ReviewReject,
    ReviewSubmit,
    TopologyBook,
    TopologyCreate,
    TopologyUpdate,
)

# A review window longer than this is refused: nobody plans an experiment further out.
MAX_REVIEW_WINDOW = timedelta(days=366)
SUBMITTED, APPROVED, REJECTED = "submitted", "approved", "rejected"


# -- who may do what -----------------------------------------------------------------------


def _reviewer(actor: Principal) -> bool:
    return actor.is_admin or actor.can("topologies:review")


def _visible(session: Session, topology_id: int, actor: Principal) -> Topology:
    """A topology its owner or a reviewer asks for; 404 for anyone else (it is not theirs)."""
    row = session.get(Topology, topology_id)
    if row is None or (row.user_id != actor.user_id and not _reviewer(actor)):
        raise not_found("topology", topology_id)
    return row


def _own(session: Session, topology_id: int, actor: Principal) -> Topology:
    """A topology its owner (or an admin) changes; reviewers may look but not touch."""
    row = _visible(session, topology_id, actor)
    if row.user_id != actor.user_id and not actor.is_admin:
        raise PermissionDenied("only the topology's owner may change it", code="not_your_topology")
    return row


# -- validation ----------------------------------------------------------------------------


def _devices(session: Session, nodes: Sequence[Mapping[str, Any]]) -> dict[int, PortedDevice]:
    ids = {n.get("device_id") for n in nodes if isinstance(n.get("device_id"), int)}
    return {
        r.id: PortedDevice(
            r.id,
            r.name,
            r.switch_name,
            r.switch_in_port,
            r.switch_out_port,
            bool(r.is_schedulable) and r.status not in NOT_BOOKABLE,
        )
        for r in repository.graph_devices(session, ids)  # type: ignore[arg-type]
    }


def analyse(
    session: Session, nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]
) -> tuple[list[Patch], list[dict[str, Any]]]:
    """The patches a drawing maps to and its problems (devices as the inventory says now)."""
    return map_graph(nodes, edges, _devices(session, nodes))


def _refuse(problems: list[dict[str, Any]]) -> Invalid:
    first = problems[0]
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    where = {k: v for k, v in first.items() if k not in ("code", "message")}
    return Invalid(
        first["message"] + more, code=first["code"], details={**where, "problems": problems}
    )


def check_graph(
    session: Session, nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]
) -> list[Patch]:
    """Validate a drawing: devices exist and are schedulable, every edge maps to switch ports,
    no switch port is used twice; 422 naming the first node or edge at fault (all in details)."""
    patches, problems = analyse(session, nodes, edges)
    if problems:
        raise _refuse(problems)
    return patches


# -- views ---------------------------------------------------------------------------------


def topology_view(
    row: Topology,
    username: str,
    review: TopologyReview | None,
    *,
    patches: list[Patch] | None = None,
    problems: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A topology as the API shows it."""
    view: dict[str, Any] = {
        "id": row.id,
        "user_id": row.user_id,
        "username": username,
        "name": row.name,
        "description": row.description,
        "nodes": row.nodes or [],
        "edges": row.edges or [],
        "review": None
        if review is None
        else {
            "status": review.status,
            "conflict_count": review.conflict_count,
            "last_checked_at": review.last_checked_at,
        },
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if patches is not None:
        view["patches"] = [
            {
                "edge": p.edge,
                "switch_name": p.switch_name,
                "ingress_port": p.ingress,
                "egress_port": p.egress,
            }
            for p in patches
        ]
        view["problems"] = problems or []
    return view


def list_topologies(
    session: Session,
    *,
    actor: Principal,
    everyone: bool,
    q: str | None,
    review_status: str | None,
    page: PageParams,
) -> tuple[list[dict[str, Any]], int]:
    """One's own topologies, or everyone's for reviewers (two queries whatever the page)."""
    if everyone and not _reviewer(actor):
        raise PermissionDenied(
            "only reviewers may list everyone's topologies", code="not_a_reviewer"
        )
    stmt = repository.topologies_query(
        user_id=None if everyone else actor.user_id or 0, q=q, review_status=review_status
    )
    rows, total = fetch_page(session, stmt, page, scalars=False)
    return [topology_view(t, u, r) for t, u, r in rows], total


def get_topology(session: Session, *, topology_id: int, actor: Principal) -> dict[str, Any]:
    """One topology with the patches its edges map to and any problems found now."""
    row = _visible(session, topology_id, actor)
    found = repository.topology_full(session, row.id)
    assert found is not None
    topology, username, review = found
    patches, problems = analyse(session, topology.nodes or [], topology.edges or [])
    return topology_view(topology, username, review, patches=patches, problems=problems)


# -- changing topologies -------------------------------------------------------------------


def create_topology(session: Session, *, data: TopologyCreate, actor: Principal) -> Topology:
    """Save a new topology of one's own; it is validated first."""
    if actor.user_id is None:
        raise PermissionDenied("only a signed-in user can own a topology", code="not_a_user")
    nodes = [n.model_dump() for n in data.nodes]
    edges = [e.model_dump() for e in data.edges]
    patches = check_graph(session, nodes, edges)
    row = Topology(
        user_id=actor.user_id,
        name=data.name,
        description=data.description,
        nodes=nodes,
        edges=edges,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "topologies.create",
        "topology",
        row.id,
        payload={
            "name": row.name,
            "nodes": len(nodes),
            "edges": len(edges),
            "patches": len(patches),
        },
    )
    return row


def _in_use(session: Session, topology_id: int, statuses: Sequence[str], what: str) -> None:
    groups = [
        r.grouped_booking_id
        for r in repository.live_bookings_of(session, topology_id)
        if r.status in statuses
    ]
    if groups:
        raise Conflict(
            f"the topology {what}: it is booked by group {groups[0]}"
            + (f" and {len(groups) - 1} more" if len(groups) > 1 else ""),
            code="topology_in_use",
            details={"grouped_booking_ids": sorted(set(groups))},
        )


def update_topology(
    session: Session, *, topology_id: int, data: TopologyUpdate, actor: Principal
) -> Topology:
    """Rename, describe or redraw a topology; a redrawn one is validated again, and its review
    goes back to submitted. Not redrawn while a booking of it is active (patch by hand then)."""
    row = _own(session, topology_id, actor)
    changes = data.model_dump(exclude_unset=True)
    for key in ("name", "nodes", "edges"):
        if key in changes and changes[key] is None:
            raise Invalid(f"{key} cannot be null", field=key)
    payload: dict[str, Any] = {}
    if "name" in changes:
        payload["name"] = {"old": row.name, "new": data.name}
        row.name = changes["name"]
    if "description" in changes:
        row.description = changes["description"]
        payload["description"] = True
    redrawn = "nodes" in changes or "edges" in changes
    if redrawn:
        _in_use(session, row.id, [repository.ACTIVE], "cannot be redrawn while it is patched")
        nodes = [n.model_dump() for n in data.nodes] if data.nodes is not None else row.nodes
        edges = [e.model_dump() for e in data.edges] if data.edges is not None else row.edges
        check_graph(session, nodes, edges)
        row.nodes, row.edges = list(nodes), list(edges)
        payload.update(nodes=len(row.nodes), edges=len(row.edges))
    session.flush()
    if redrawn:
        review = repository.review_of(session, row.id)
        if review is not None:
            if review.status != SUBMITTED:
                payload["review_reset"] = review.status
                review.status, review.resolved_at, review.resolved_by = SUBMITTED, None, None
            _check(session, row, review)
            session.flush()
    audit.record(session, actor, "topologies.update", "topology", row.id, payload=payload)
    return row


def delete_topology(session: Session, *, topology_id: int, actor: Principal) -> None:
    """Delete a topology that no live booking uses."""
    row = _own(session, topology_id, actor)
    _in_use(
        session,
        row.id,
        repository.LIVE,
        "cannot be deleted while bookings use it (cancel them first)",
    )
    name = row.name
    session.delete(row)
    session.flush()
    audit.record(
        session, actor, "topologies.delete", "topology", topology_id, payload={"name": name}
    )


# -- review --------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.isoformat()


def compute_conflicts(
    session: Session, topology: Topology, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """What stands in the way of a topology in a window: its own problems (a port used twice,
    a device gone), devices held by others' bookings or in maintenance, patches that clash
    with those of other confirmed or active groups, switches missing from the inventory."""
    nodes, edges = topology.nodes or [], topology.edges or []
    patches, problems = analyse(session, nodes, edges)
    conflicts: list[dict[str, Any]] = [{"kind": "invalid", **p} for p in problems]
    node_of = {
        n["device_id"]: str(n.get("id"))
        for n in nodes
        if isinstance(n, dict) and isinstance(n.get("device_id"), int)
    }
    device_ids = set(node_of)
    for b in repository.holding_overlaps(session, device_ids, start, end):
        if b.topology_id == topology.id or b.user_id == topology.user_id:
            continue
        conflicts.append(
            {
                "kind": "booking",
                "node": node_of.get(b.device_id),
                "device_id": b.device_id,
                "booking_id": b.id,
                "grouped_booking_id": b.grouped_booking_id,
                "username": b.username,
                "status": b.status,
                "start": _iso(b.start_time),
                "end": _iso(b.end_time),
                "message": f"device {b.device_id} is booked by {b.username} ({b.status})",
            }
        )
    for w in repository.maintenance_overlaps(session, device_ids, start, end):
        conflicts.append(
            {
                "kind": "maintenance",
                "node": node_of.get(w.device_id),
                "device_id": w.device_id,
                "maintenance_id": w.id,
                "start": _iso(w.start_time),
                "end": _iso(w.end_time),
                "reason": w.reason,
                "message": f"device {w.device_id} is in maintenance",
            }
        )
    conflicts += _patch_clashes(session, topology, patches, start, end)
    names = {p.switch_name for p in patches}
    for name in sorted(names - repository.switch_names(session, names)):
        conflicts.append(
            {
                "kind": "switch",
                "switch_name": name,
                "message": f"switch {name!r} is not in the inventory (a device of that name "
                "with platform 'polatis'), so the patches cannot be made",
            }
        )
    return conflicts


def _patch_clashes(
    session: Session, topology: Topology, patches: list[Patch], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    groups = [
        g for g in repository.patching_groups(session, start, end) if g.topology_id != topology.id
    ]
    if not groups or not patches:
        return []
    taken: dict[tuple[str, int], tuple[str, str]] = {}
    for row in repository.wanted_patches_of_groups(session, {g.grouped_booking_id for g in groups}):
        label = f"{row.ingress_port}->{row.egress_port}"
        for port in (row.ingress_port, row.egress_port):
            taken[(row.switch_name, port)] = (row.grouped_booking_id or "", label)
    others = repository.topologies_by_ids(session, {g.topology_id for g in groups if g.topology_id})
    if others:
        ids = {
            n.get("device_id")
            for t in others.values()
            for n in (t.nodes or [])
            if isinstance(n, dict) and isinstance(n.get("device_id"), int)
        }
        devices = ported_devices(session, ids=ids)  # type: ignore[arg-type]
        for g in groups:
            other = others.get(g.topology_id) if g.topology_id else None
            if other is None:
                continue
            for p in map_graph(other.nodes or [], other.edges or [], devices)[0]:
                for port in (p.ingress, p.egress):
                    taken.setdefault(
                        (p.switch_name, port), (g.grouped_booking_id, f"{p.ingress}->{p.egress}")
                    )
    clashes = []
    for p in patches:
        for port in (p.ingress, p.egress):
            hit = taken.get((p.switch_name, port))
            if hit is not None:
                clashes.append(
                    {
                        "kind": "patch",
                        "edge": p.edge,
                        "switch_name": p.switch_name,
                        "port": port,
                        "grouped_booking_id": hit[0],
                        "patch": hit[1],
                        "message": f"edge {p.edge!r}: port {port} of {p.switch_name!r} is "
                        f"patched ({hit[1]}) for booking group {hit[0]}",
                    }
                )
                break
    return clashes


def _check(session: Session, topology: Topology, review: TopologyReview) -> bool:
    """Re-compute and store a review's conflicts; whether they changed."""
    if review.window_start is None or review.window_end is None:
        conflicts: list[dict[str, Any]] = []
    else:
        conflicts = compute_conflicts(session, topology, review.window_start, review.window_end)
    changed = conflicts != (review.conflicts or [])
    review.conflicts = conflicts
    review.conflict_count = len(conflicts)
    review.last_checked_at = utcnow()
    return changed


def _review_of(session: Session, topology: Topology) -> TopologyReview:
    review = repository.review_of(session, topology.id)
    if review is None:
        raise not_found("review of topology", topology.id)
    return review


def submit(
    session: Session, *, topology_id: int, data: ReviewSubmit, actor: Principal
) -> TopologyReview:
    """Ask for a topology to be reviewed for a window; its conflicts are computed now."""
    topology = _own(session, topology_id, actor)
    start, end = as_utc(data.window_start), as_utc(data.window_end)
    if end <= start:
        raise Invalid(
            "the window must end after it starts", field="window_end", code="invalid_time_range"
        )
    if end <= utcnow():
        raise Invalid("the window is over already", field="window_end", code="window_in_past")
    if end - start > MAX_REVIEW_WINDOW:
        raise Invalid(
            f"a review window may span at most {MAX_REVIEW_WINDOW.days} days",
            field="window_end",
            code="window_too_long",
        )
    if not topology.nodes:
        raise Invalid("an empty topology cannot be reviewed", field="nodes", code="empty_topology")
    review = repository.review_of(session, topology.id)
    previous = review.status if review is not None else None
    if review is None:
        review = TopologyReview(topology_id=topology.id)
        session.add(review)
    review.status = SUBMITTED
    review.window_start, review.window_end = start, end
    review.submitted_by = actor.user_id
    review.resolved_at = review.resolved_by = None
    review.notes = None
    _check(session, topology, review)
    session.flush()
    audit.record(
        session,
        actor,
        "topologies.submit",
        "topology",
        topology.id,
        payload={
            "window_start": start,
            "window_end": end,
            "conflict_count": review.conflict_count,
            "previous_status": previous,
        },
    )
    return review


def get_review(session: Session, *, topology_id: int, actor: Principal) -> TopologyReview:
    """The review of a topology (owner and reviewers)."""
    return _review_of(session, _visible(session, topology_id, actor))


def recheck(session: Session, *, topology_id: int, actor: Principal) -> TopologyReview:
    """Compute a review's conflicts again, now (owner and reviewers)."""
    topology = _visible(session, topology_id, actor)
    review = _review_of(session, topology)
    before = review.conflict_count
    _check(session, topology, review)
    session.flush()
    audit.record(
        session,
        actor,
        "topologies.recheck",
        "topology",
        topology.id,
        payload={"conflict_count": review.conflict_count, "before": before},
    )
    return review


def _decide(
    session: Session, topology_id: int, actor: Principal, status: str, notes: str | None
) -> TopologyReview:
    topology = _visible(session, topology_id, actor)
    if topology.user_id == actor.user_id and not actor.is_admin:
        raise PermissionDenied(
            "a reviewer cannot decide on their own topology", code="own_topology"
        )
    review = _review_of(session, topology)
    if review.status != SUBMITTED:
        raise InvalidTransition(
            f"the review is {review.status} already; the owner submits it again to reopen it",
            details={"status": review.status},
        )
    _check(session, topology, review)  # decide on what is true now
    review.status = status
    review.notes = notes
    review.resolved_at = utcnow()
    review.resolved_by = actor.user_id
    session.flush()
    audit.record(
        session,
        actor,
        f"topologies.{'approve' if status == APPROVED else 'reject'}",
        "topology",
        topology.id,
        payload={"notes": notes, "conflict_count": review.conflict_count},
    )
    return review


def approve(
    session: Session, *, topology_id: int, data: ReviewDecision, actor: Principal
) -> TopologyReview:
    """Approve a submitted topology, with notes (conflicts are re-checked first)."""
    return _decide(session, topology_id, actor, APPROVED, data.notes)


def reject(
    session: Session, *, topology_id: int, data: ReviewReject, actor: Principal
) -> TopologyReview:
    """Reject a submitted topology, saying why."""
    return _decide(session, topology_id, actor, REJECTED, data.notes)


def review_list_view(
    review: TopologyReview, name: str, owner_id: int, owner: str
) -> dict[str, Any]:
    """A review with its topology's name and owner."""
    return {
        **{c.key: getattr(review, c.key) for c in TopologyReview.__table__.columns},
        "topology_name": name,
        "owner_id": owner_id,
        "owner_username": owner,
    }


def recheck_open_reviews(session: Session) -> tuple[int, int]:
    """Re-compute conflicts of every review whose window is not over (the periodic job)."""
    reviews = repository.open_reviews(session, utcnow())
    topologies = repository.topologies_by_ids(session, {r.topology_id for r in reviews})
    changed = 0
    for review in reviews:
        topology = topologies.get(review.topology_id)
        if topology is not None and _check(session, topology, review):
            changed += 1
    session.flush()
    return len(reviews), changed


# -- booking a topology --------------------------------------------------------------------


def book(
    session: Session, *, topology_id: int, data: TopologyBook, actor: Principal
) -> dict[str, Any]:
    """Book every device of a topology over one window as one group linked to it, under the
    usual booking rules (conflicts, maintenance, limits, approval)."""
    topology = _own(session, topology_id, actor)
    if not actor.can("bookings:write"):
        raise PermissionDenied(
            "booking a topology also needs the 'bookings:write' permission",
            code="cannot_book",
        )
    nodes = topology.nodes or []
    if not nodes:
        raise Invalid("an empty topology cannot be booked", field="nodes", code="empty_topology")
    if len(nodes) > MAX_ITEMS:
        raise Invalid(
            f"one booking holds at most {MAX_ITEMS} devices; this topology has {len(nodes)}",
            field="nodes",
            code="too_many_devices",
        )
    check_graph(session, nodes, topology.edges or [])
    request = BookingCreate(
        items=[
            BookingItem(device_id=n["device_id"], start=data.start, end=data.end) for n in nodes
        ],
        comment=data.comment,
        collaborators=data.collaborators,
        waitlist=data.waitlist,
        topology_id=topology.id,
    )
    return bookings.create(session, data=request, actor=actor, source={"topology_id": topology.id})


# -- patches -------------------------------------------------------------------------------


def patch_status(row: CrossConnect) -> str:
    """pending, applied, failed, removing or removed."""
    if row.desired_state == row.actual_state:
        return "applied" if row.desired_state == PRESENT else "removed"
    if row.last_error:
        return "failed"
    return "pending" if row.desired_state == PRESENT else "removing"


def patch_view(
    row: CrossConnect,
    by_out: Mapping[tuple[str, int], str],
    by_in: Mapping[tuple[str, int], str],
) -> dict[str, Any]:
    """A patch row as the API shows it, with the devices on its ports and its status."""
    return {
        **{c.key: getattr(row, c.key) for c in CrossConnect.__table__.columns},
        "ingress_device": by_out.get((row.switch_name, row.ingress_port)),
        "egress_device": by_in.get((row.switch_name, row.egress_port)),
        "status": patch_status(row),
    }


def patch_views(session: Session, rows: Sequence[CrossConnect]) -> list[dict[str, Any]]:
    """Views of some rows (one query for all their device names)."""
    by_out, by_in = repository.names_on_ports(
        session, [(r.switch_name, r.ingress_port, r.egress_port) for r in rows]
    )
    return [patch_view(r, by_out, by_in) for r in rows]


def list_patches(
    session: Session, *, actor: Principal, filters: dict[str, Any], page: PageParams
) -> tuple[list[dict[str, Any]], int]:
    """Patches and their states; without bookings:read only those of one's own groups."""
    visible_to = None if actor.can("bookings:read") else actor.user_id or 0
    rows, total = fetch_page(
        session, repository.patches_query(visible_to=visible_to, **filters), page
    )
    return patch_views(session, rows), total


def _group_access(session: Session, gid: str | None, actor: Principal, *, write: bool) -> list[Any]:
    rows = repository.group_rows(session, gid) if gid else []
    owner = rows[0].user_id if rows else None
    if actor.is_admin or (owner is not None and owner == actor.user_id):
        return rows
    sees = actor.can("bookings:read") or (
        gid is not None
        and actor.user_id is not None
        and repository.is_collaborator(session, gid, actor.user_id)
    )
    if not sees:
        raise not_found("booking group" if write else "cross-connect", gid)
    if write:
        raise PermissionDenied(
            "only the booking's owner or an admin may patch its devices by hand",
            code="not_your_booking",
        )
    return rows


def get_patch(session: Session, *, cross_connect_id: int, actor: Principal) -> dict[str, Any]:
    """One patch and its state (for those who may see its booking)."""
    row = session.get(CrossConnect, cross_connect_id)
    if row is None:
        raise not_found("cross-connect", cross_connect_id)
    try:
        _group_access(session, row.grouped_booking_id, actor, write=False)
    except NotFound:
        raise not_found("cross-connect", cross_connect_id) from None
    return patch_views(session, [row])[0]


def _ports(session: Session, data: CrossConnectCreate, active: set[int]) -> tuple[str, int, int]:
    """Switch, ingress and egress of a hand-made patch, checked against the booked devices."""
    if data.source_device_id is not None and data.target_device_id is not None:
        devices = ported_devices(session, ids=[data.source_device_id, data.target_device_id])
        for field, device_id in (
            ("source_device_id", data.source_device_id),
            ("target_device_id", data.target_device_id),
        ):
            if device_id not in devices:
                raise Invalid(
                    f"there is no device with id {device_id}", field=field, code="unknown_device"
                )
            if device_id not in active:
                raise PermissionDenied(
                    f"device {devices[device_id].name!r} is not booked and active in this group",
                    code="device_not_booked",
                    details={"device_id": device_id},
                )
        a, b = devices[data.source_device_id], devices[data.target_device_id]
        if not a.switch_name or a.out_port is None or not b.switch_name or b.in_port is None:
            missing = a if not a.switch_name or a.out_port is None else b
            raise Invalid(
                f"device {missing.name!r} has no {'output' if missing is a else 'input'} port "
                "on an optical switch",
                field="source_device_id" if missing is a else "target_device_id",
                code="edge_not_patchable",
            )
        if a.switch_name != b.switch_name:
            raise Invalid(
                f"{a.name!r} and {b.name!r} are on different switches",
                field="target_device_id",
                code="different_switches",
            )
        return a.switch_name, a.out_port, b.in_port
    assert data.switch_name and data.ingress_port and data.egress_port
    switch, ingress, egress = data.switch_name, data.ingress_port, data.egress_port
    on_switch = ported_devices(session, switches=[switch])
    by_out = {d.out_port: d for d in on_switch.values() if d.switch_name == switch}
    by_in = {d.in_port: d for d in on_switch.values() if d.switch_name == switch}
    for field, port, found, role in (
        ("ingress_port", ingress, by_out.get(ingress), "output"),
        ("egress_port", egress, by_in.get(egress), "input"),
    ):
        if found is None:
            raise Invalid(
                f"port {port} of switch {switch!r} is not the {role} port of any device",
                field=field,
                code="unknown_port",
            )
        if found.id not in active:
            raise PermissionDenied(
                f"port {port} belongs to device {found.name!r}, which is not booked and active "
                "in this group",
                code="port_not_booked",
                details={"port": port, "device_id": found.id},
            )
    return switch, ingress, egress


def add_patch(session: Session, *, data: CrossConnectCreate, actor: Principal) -> CrossConnect:
    """Patch two devices of an active booking by hand (its owner or an admin); applied soon."""
    gid = data.grouped_booking_id
    rows = _group_access(session, gid, actor, write=True)
    if not rows:
        raise not_found("booking group", gid)
    now = utcnow()
    active = {
        r.device_id
        for r in rows
        if r.status == repository.ACTIVE and r.start_time <= now < r.end_time
    }
    if not active:
        raise InvalidTransition(
            "patches can be made by hand only while the booking is active",
            code="booking_not_active",
            details={"statuses": sorted({r.status for r in rows})},
        )
    switch, ingress, egress = _ports(session, data, active)
    if ingress == egress:
        raise Invalid(
            "ingress and egress are the same port", field="egress_port", code="port_reused"
        )
    existing = repository.patch_by_key(session, gid, switch, ingress, egress)
    if existing is not None and existing.desired_state == PRESENT:
        raise AlreadyExists(
            f"patch {ingress}->{egress} is wanted for this booking already",
            details={"cross_connect_id": existing.id},
        )
    clash = repository.wanted_on_ports(session, switch, {ingress, egress})
    if clash:
        other = clash[0]
        raise Conflict(
            f"a port of {ingress}->{egress} is used by patch {other.ingress_port}->"
            f"{other.egress_port} already; remove that one first",
            code="port_in_use",
            details={
                "cross_connect_id": other.id,
                "grouped_booking_id": other.grouped_booking_id,
            },
        )
    if existing is not None:
        row = existing
        row.desired_state = PRESENT
        row.attempts, row.last_error, row.next_attempt_at = 0, None, None
        row.created_by = actor.user_id
    else:
        row = CrossConnect(
            grouped_booking_id=gid,
            switch_name=switch,
            ingress_port=ingress,
            egress_port=egress,
            desired_state=PRESENT,
            actual_state=UNKNOWN,
            attempts=0,
            created_by=actor.user_id,
        )
        session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "cross_connects.create",
        "cross_connect",
        row.id,
        payload={
            "grouped_booking_id": gid,
            "switch_name": switch,
            "ingress_port": ingress,
            "egress_port": egress,
            "again": existing is not None,
        },
    )
    request_provisioning(session)
    return row


def remove_patch(session: Session, *, cross_connect_id: int, actor: Principal) -> CrossConnect:
    """Take a patch down by hand (the booking's owner or an admin); removed soon."""
    row = session.get(CrossConnect, cross_connect_id)
    if row is None:
        raise not_found("cross-connect", cross_connect_id)
    if row.grouped_booking_id is None and not actor.is_admin:
        raise PermissionDenied("only an admin may remove this patch", code="not_your_booking")
    if row.grouped_booking_id is not None:
        try:
            _group_access(session, row.grouped_booking_id, actor, write=True)
        except NotFound:
            raise not_found("cross-connect", cross_connect_id) from None
    if row.desired_state == ABSENT:
        return row  # on its way out already: nothing changes
    row.desired_state = ABSENT
    row.attempts, row.last_error, row.next_attempt_at = 0, None, None
    session.flush()
    audit.record(
        session,
        actor,
        "cross_connects.delete",
        "cross_connect",
        row.id,
        payload={
            "grouped_booking_id": row.grouped_booking_id,
            "switch_name": row.switch_name,
            "ingress_port": row.ingress_port,
            "egress_port": row.egress_port,
        },
    )
    request_provisioning(session)
    return row
