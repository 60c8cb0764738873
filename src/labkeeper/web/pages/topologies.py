"""Topologies: the list, the editor (Cytoscape.js canvas plus forms), review and booking.

The editor keeps the drawing in the browser (`static/js/topologies.js`) and asks
`POST /topologies/validate` (JSON, the session's CSRF token in the X-CSRF-Token header) for the
topology service's verdict after every change. Saving posts the drawing as JSON in a form field,
so the service validates it once more. Everything a reader needs is also in plain tables, so a
topology reads without the canvas; during an active booking of it, the links table shows each
link's patch on the switch (desired, actual, status) and refreshes itself.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from pydantic import Field, ValidationError
from starlette.datastructures import FormData

from labkeeper.auth.deps import Principal, require
from labkeeper.booking import service as bookings
from labkeeper.core.errors import AppError, Invalid
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import Body, Id
from labkeeper.core.time import utcnow
from labkeeper.topology import repository, service
from labkeeper.topology.schemas import (
    Edges,
    Nodes,
    ReviewDecision,
    ReviewReject,
    ReviewSubmit,
    TopologyBook,
    TopologyCreate,
    TopologyUpdate,
)
from labkeeper.web.deps import DB, Filter, Form, Paging, refused
from labkeeper.web.render import (
    error_fields,
    lab_timezone,
    page,
    query_string,
    redirect,
    sentence,
    templates,
    text,
    validation_errors,
    vendor_available,
)

router = APIRouter(include_in_schema=False)

Drawer = Annotated[Principal, Depends(require("topologies:write"))]
Reviewer = Annotated[Principal, Depends(require("topologies:review"))]

ALL_PATCHES = PageParams(limit=500, offset=0)
STATUS_LABELS = {
    "PENDING": "pending approval",
    "CONFIRMED": "confirmed",
    "ACTIVE": "active",
    "CONFLICTING": "waitlisted",
}
MAX_GRAPH_CHARS = 64 * 1024  # what render.form_data reads of one field


class GraphCheck(Body):
    """A drawing to validate: nodes and edges as the API takes them."""

    nodes: Nodes = Field(default_factory=list)
    edges: Edges = Field(default_factory=list)


# -- helpers ---------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _local_input(value: datetime, tz: str) -> str:
    """A time as a datetime-local input shows it, in the lab's time zone."""
    return value.astimezone(_zone(tz)).strftime("%Y-%m-%dT%H:%M")


def _parse_local(value: str, tz: str, field: str) -> datetime:
    """A datetime-local value (lab time zone) as an aware datetime; Invalid naming the field."""
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid("Enter a date and time", field=field) from None
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=_zone(tz))


def _graph(form: FormData) -> tuple[list[Any], list[Any]] | None:
    """The drawing the editor posted (None: the field is missing or not a drawing)."""
    raw = form.get("graph")
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_GRAPH_CHARS:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    nodes, edges = data.get("nodes", []), data.get("edges", [])
    if not isinstance(nodes, list) or not isinstance(edges, list):
        return None
    return nodes, edges


def _palette(session: DB) -> list[dict[str, Any]]:
    """Devices a topology may hold: schedulable and plugged into an optical switch."""
    return [
        {
            "id": r.id,
            "name": r.name,
            "status": r.status,
            "switch": r.switch_name,
            "in_port": r.switch_in_port,
            "out_port": r.switch_out_port,
        }
        for r in repository.patchable_devices(session)
        if r.status not in ("retired", "unavailable")
    ]


def _node_devices(session: DB, nodes: list[Any]) -> dict[int, dict[str, Any]]:
    ids = {n.get("device_id") for n in nodes if isinstance(n, dict)}
    return {
        r.id: {
            "id": r.id,
            "name": r.name,
            "status": r.status,
            "switch": r.switch_name,
            "in_port": r.switch_in_port,
            "out_port": r.switch_out_port,
        }
        for r in repository.graph_devices(session, {i for i in ids if isinstance(i, int)})
    }


def _links(
    nodes: list[Any],
    edges: list[Any],
    devices: dict[int, dict[str, Any]],
    patches: list[dict[str, Any]],
    problems: list[dict[str, Any]],
    states: dict[tuple[str, int, int], dict[str, Any]],
) -> list[dict[str, Any]]:
    """One row per edge: its two devices and ports, the patch it maps to, problems, state."""
    device_of = {
        str(n.get("id")): devices.get(n.get("device_id"))  # type: ignore[arg-type]
        for n in nodes
        if isinstance(n, dict)
    }
    plan = {p["edge"]: p for p in patches}
    trouble: dict[str, list[str]] = defaultdict(list)
    for p in problems:
        if p.get("edge") is not None:
            trouble[str(p["edge"])].append(str(p["message"]))
    rows = []
    for e in edges:
        if not isinstance(e, dict):
            continue
        eid = str(e.get("id"))
        a, b = device_of.get(str(e.get("source"))), device_of.get(str(e.get("target")))
        patch = plan.get(eid)
        state = (
            states.get((patch["switch_name"], patch["ingress_port"], patch["egress_port"]))
            if patch
            else None
        )
        rows.append(
            {
                "id": eid,
                "source": str(e.get("source")),
                "target": str(e.get("target")),
                "source_name": a["name"] if a else str(e.get("source")),
                "target_name": b["name"] if b else str(e.get("target")),
                "out_port": a["out_port"] if a else None,
                "in_port": b["in_port"] if b else None,
                "patch": patch,
                "problems": trouble.get(eid, []),
                "state": state,
            }
        )
    return rows


def _bookings_of(session: DB, topology_id: int) -> list[dict[str, Any]]:
    """Live booking groups of a topology: id, status, whether any of its rows is active."""
    statuses: dict[str, set[str]] = defaultdict(set)
    for r in repository.live_bookings_of(session, topology_id):
        statuses[r.grouped_booking_id].add(r.status)
    return [
        {
            "id": gid,
            "status": bookings.group_status(found),
            "label": STATUS_LABELS.get(bookings.group_status(found), "booked"),
            "active": "ACTIVE" in found,
        }
        for gid, found in sorted(statuses.items())
    ]


def _patch_states(
    session: DB, principal: Principal, active: list[str]
) -> dict[tuple[str, int, int], dict[str, Any]]:
    """The cross-connects of the active groups, by (switch, ingress, egress)."""
    states: dict[tuple[str, int, int], dict[str, Any]] = {}
    for gid in active:
        items, _ = service.list_patches(
            session,
            actor=principal,
            filters={
                "grouped_booking_id": gid,
                "topology_id": None,
                "switch_name": None,
                "desired_state": None,
                "failing": None,
            },
            page=ALL_PATCHES,
        )
        for item in items:
            key = (item["switch_name"], item["ingress_port"], item["egress_port"])
            states.setdefault(key, item)
    return states


def _split_errors(errors: dict[str, str]) -> dict[str, dict[str, str]]:
    """Errors by the form they belong to ("book.end" is the book form's end field)."""
    out: dict[str, dict[str, str]] = {"save": {}, "submit": {}, "book": {}, "review": {}}
    for key, message in errors.items():
        form, _, field = key.partition(".")
        if field and form in out:
            out[form][field] = message
        else:
            out["save"][key] = message
    return out


def _defaults(tz: str) -> dict[str, str]:
    start = (utcnow() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return {
        "start": _local_input(start, tz),
        "end": _local_input(start + timedelta(hours=2), tz),
        "window_start": _local_input(start, tz),
        "window_end": _local_input(start + timedelta(hours=4), tz),
    }


def _editor(
    request: Request,
    session: DB,
    principal: Principal,
    *,
    topology_id: int | None,
    status: int = 200,
    draft: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    problems: list[dict[str, Any]] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    """The editor page of a new topology (topology_id None) or of a saved one."""
    tz = lab_timezone(session)
    view: dict[str, Any] | None = None
    review = None
    groups: list[dict[str, Any]] = []
    if topology_id is not None:
        view = service.get_topology(session, topology_id=topology_id, actor=principal)
        review = repository.review_of(session, topology_id)
        groups = _bookings_of(session, topology_id)
    owner = view is None or view["user_id"] == principal.user_id
    can_edit = owner or principal.is_admin
    active = [g["id"] for g in groups if g["active"]]
    editable = can_edit and not active
    # A draft whose drawing could not be read keeps the saved drawing (or none).
    shown = {**(view or {}), **(draft or {})}
    name = shown.get("name", "")
    description = shown.get("description") or ""
    nodes = shown.get("nodes", [])
    edges = shown.get("edges", [])
    if draft is not None:
        patches_, found = service.analyse(session, nodes, edges)
        patches = [
            {
                "edge": p.edge,
                "switch_name": p.switch_name,
                "ingress_port": p.ingress,
                "egress_port": p.egress,
            }
            for p in patches_
        ]
        problems = problems if problems is not None else found
    else:
        patches = view["patches"] if view else []
        problems = problems if problems is not None else (view["problems"] if view else [])
    devices = _node_devices(session, nodes)
    states = _patch_states(session, principal, active) if active else {}
    links = _links(nodes, edges, devices, patches, problems, states)
    reviewer = principal.is_admin or principal.can("topologies:review")
    can_decide = (
        review is not None
        and review.status == "submitted"
        and reviewer
        and (not owner or principal.is_admin)
    )
    client = {
        "nodes": nodes,
        "edges": edges,
        "devices": list(devices.values()),
        "palette": _palette(session) if editable else [],
        "editable": editable,
        "validate_url": "/topologies/validate",
        "problems": problems,
        "patches": patches,
    }
    return page(
        request,
        session,
        principal,
        "topologies/editor.html",
        status=status,
        topology=view,
        name=name,
        description=description,
        nodes=nodes,
        devices=devices,
        links=links,
        problems=problems,
        node_problems=[p for p in problems if p.get("edge") is None],
        review=review,
        groups=groups,
        active=active,
        can_edit=can_edit,
        editable=editable,
        can_decide=can_decide,
        can_book=can_edit and principal.can("bookings:write"),
        client=client,
        has_cytoscape=vendor_available("cytoscape.min.js"),
        errors=errors or {},
        form_errors=_split_errors(errors or {}),
        values={**_defaults(tz), **(values or {})},
    )


# -- the list --------------------------------------------------------------------------------


@router.get("/topologies")
def topologies_page(
    request: Request,
    session: DB,
    principal: Drawer,
    paging: Paging,
    scope: Annotated[Literal["mine", "review"], Query()] = "mine",
    q: Filter = None,
) -> Response:
    """Your topologies; reviewers also see those submitted for review."""
    reviewer = principal.is_admin or principal.can("topologies:review")
    if scope == "review" and not reviewer:
        scope = "mine"
    reviews: list[dict[str, Any]] = []
    topologies: list[dict[str, Any]] = []
    if scope == "review":
        rows, total = fetch_page(
            session, repository.reviews_query(status="submitted"), paging, scalars=False
        )
        reviews = [service.review_list_view(*r) for r in rows]
    else:
        topologies, total = service.list_topologies(
            session, actor=principal, everyone=False, q=q, review_status=None, page=paging
        )
    filters = {"scope": "" if scope == "mine" else scope, "q": q or ""}
    return page(
        request,
        session,
        principal,
        "topologies/list.html",
        scope=scope,
        reviewer=reviewer,
        topologies=topologies,
        reviews=reviews,
        total=total,
        paging=paging,
        filters=filters,
        here="/topologies" + query_string(filters),
    )


# -- drawing and saving ----------------------------------------------------------------------


@router.get("/topologies/new")
def topology_new(request: Request, session: DB, principal: Drawer) -> Response:
    """The editor, empty: place devices, connect their ports, save."""
    return _editor(request, session, principal, topology_id=None)


@router.post("/topologies/validate")
def topology_validate(body: GraphCheck, session: DB, principal: Drawer) -> dict[str, Any]:
    """What the topology service says of a drawing: its problems and the patches it maps to."""
    patches, problems = service.analyse(
        session,
        [n.model_dump() for n in body.nodes],
        [e.model_dump() for e in body.edges],
    )
    return {
        "problems": problems,
        "patches": [
            {
                "edge": p.edge,
                "switch_name": p.switch_name,
                "ingress_port": p.ingress,
                "egress_port": p.egress,
            }
            for p in patches
        ],
    }


def _draft(form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    """What the save form posted, and the errors of its fields that cannot be read."""
    errors: dict[str, str] = {}
    draft: dict[str, Any] = {
        "name": text(form, "name", limit=300),
        "description": text(form, "description", limit=6000),
    }
    graph = _graph(form)
    if graph is None:
        errors["graph"] = "The drawing could not be read; reload the page and draw it again"
        return draft, errors
    try:
        checked = GraphCheck(nodes=graph[0], edges=graph[1])
    except ValidationError as exc:
        first = next(iter(validation_errors(exc).values()), "it does not have the right shape")
        errors["graph"] = f"The drawing could not be read ({first}); reload the page"
        return draft, errors
    draft["nodes"] = [n.model_dump() for n in checked.nodes]
    draft["edges"] = [e.model_dump() for e in checked.edges]
    return draft, errors


def _save_failed(
    request: Request,
    session: DB,
    principal: Principal,
    topology_id: int | None,
    draft: dict[str, Any],
    errors: dict[str, str],
    status: int,
    exc: AppError | None = None,
) -> Response:
    problems = None
    if exc is not None:
        found = exc.details.get("problems")
        if isinstance(found, list):
            problems = found
            errors = {"__all__": "The drawing has problems; fix them and save again", **errors}
        else:
            errors = {**error_fields(exc, {"name", "description"}), **errors}
    return _editor(
        request,
        session,
        principal,
        topology_id=topology_id,
        status=status,
        draft=draft,
        errors=errors,
        problems=problems,
    )


def _schema_errors(exc: ValidationError) -> dict[str, str]:
    errors = validation_errors(exc)
    graph = [m for f, m in errors.items() if f in ("nodes", "edges")]
    out = {f: m for f, m in errors.items() if f not in ("nodes", "edges")}
    if graph:
        out["graph"] = "The drawing is not valid: " + graph[0]
    if "at least 1 character" in out.get("name", ""):
        out["name"] = "Give the topology a name"
    return out


@router.post("/topologies/new")
def topology_create(request: Request, session: DB, form: Form, principal: Drawer) -> Response:
    """Save a new topology (validated by the topology service first)."""
    draft, errors = _draft(form)
    if not errors:
        try:
            data = TopologyCreate(
                name=draft["name"],
                description=draft["description"] or None,
                nodes=draft["nodes"],
                edges=draft["edges"],
            )
        except ValidationError as exc:
            errors = _schema_errors(exc)
    if errors:
        return _save_failed(request, session, principal, None, draft, errors, 422)
    try:
        row = service.create_topology(session, data=data, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return _save_failed(request, session, principal, None, draft, {}, exc.status, exc)
    return redirect(f"/topologies/{row.id}", f"Topology {row.name} is saved.")


@router.get("/topologies/{topology_id}")
def topology_page(request: Request, topology_id: Id, session: DB, principal: Drawer) -> Response:
    """One topology: its drawing and links, review, booking and, while booked, patch states."""
    return _editor(request, session, principal, topology_id=topology_id)


@router.get("/topologies/{topology_id}/links")
def topology_links(request: Request, topology_id: Id, session: DB, principal: Drawer) -> Response:
    """The links table alone (refreshed by the page while a booking of it is active)."""
    view = service.get_topology(session, topology_id=topology_id, actor=principal)
    groups = _bookings_of(session, topology_id)
    active = [g["id"] for g in groups if g["active"]]
    devices = _node_devices(session, view["nodes"])
    states = _patch_states(session, principal, active) if active else {}
    links = _links(view["nodes"], view["edges"], devices, view["patches"], view["problems"], states)
    return templates.TemplateResponse(
        request,
        "topologies/_links.html",
        {"links": links, "active": active, "topology": view, "editable": False},
    )


@router.post("/topologies/{topology_id}")
def topology_save(
    request: Request, topology_id: Id, session: DB, form: Form, principal: Drawer
) -> Response:
    """Save a topology's name, description and drawing (redrawn: validated and re-reviewed)."""
    draft, errors = _draft(form)
    if not errors:
        try:
            current = service.get_topology(session, topology_id=topology_id, actor=principal)
        except AppError as exc:
            refused(request, session, principal, exc)
            raise
        try:
            body = TopologyCreate(
                name=draft["name"],
                description=draft["description"] or None,
                nodes=draft["nodes"],
                edges=draft["edges"],
            )
        except ValidationError as exc:
            errors = _schema_errors(exc)
    if errors:
        return _save_failed(request, session, principal, topology_id, draft, errors, 422)
    changes: dict[str, Any] = {"name": body.name, "description": body.description}
    nodes = [n.model_dump() for n in body.nodes]
    edges = [e.model_dump() for e in body.edges]
    if nodes != current["nodes"] or edges != current["edges"]:
        changes.update(nodes=body.nodes, edges=body.edges)  # only a redraw is re-validated
    try:
        service.update_topology(
            session, topology_id=topology_id, data=TopologyUpdate(**changes), actor=principal
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        return _save_failed(request, session, principal, topology_id, draft, {}, exc.status, exc)
    return redirect(f"/topologies/{topology_id}", f"Topology {body.name} is saved.")


@router.post("/topologies/{topology_id}/delete")
def topology_delete(
    request: Request, topology_id: Id, session: DB, form: Form, principal: Drawer
) -> Response:
    """Delete a topology that no live booking uses."""
    try:
        service.delete_topology(session, topology_id=topology_id, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect(f"/topologies/{topology_id}", sentence(exc.message), "error")
    return redirect("/topologies", "The topology is deleted.")


# -- review ----------------------------------------------------------------------------------


def _form_failed(
    request: Request,
    session: DB,
    principal: Principal,
    topology_id: int,
    values: dict[str, str],
    errors: dict[str, str],
    status: int,
) -> Response:
    return _editor(
        request,
        session,
        principal,
        topology_id=topology_id,
        status=status,
        values=values,
        errors=errors,
    )


@router.post("/topologies/{topology_id}/submit")
def topology_submit(
    request: Request, topology_id: Id, session: DB, form: Form, principal: Drawer
) -> Response:
    """Submit a topology for review over a window (its conflicts are computed)."""
    tz = lab_timezone(session)
    values = {k: text(form, k, limit=40) for k in ("window_start", "window_end")}
    try:
        data = ReviewSubmit(
            window_start=_parse_local(values["window_start"], tz, "window_start"),
            window_end=_parse_local(values["window_end"], tz, "window_end"),
        )
        review = service.submit(session, topology_id=topology_id, data=data, actor=principal)
    except ValidationError as exc:
        errors = {f"submit.{k}": v for k, v in validation_errors(exc).items()}
        return _form_failed(request, session, principal, topology_id, values, errors, 422)
    except AppError as exc:
        refused(request, session, principal, exc)
        if exc.status == 404:
            raise
        errors = {f"submit.{k}": v for k, v in error_fields(exc, set(values)).items()}
        return _form_failed(request, session, principal, topology_id, values, errors, exc.status)
    conflicts = review.conflict_count
    note = f" with {conflicts} conflict{'s' if conflicts != 1 else ''}" if conflicts else ""
    return redirect(f"/topologies/{topology_id}", f"Submitted for review{note}.")


def _decide(
    request: Request,
    session: DB,
    principal: Principal,
    topology_id: int,
    form: FormData,
    approve: bool,
) -> Response:
    notes = text(form, "notes", limit=3000)
    values = {"notes": notes}
    try:
        if approve:
            service.approve(
                session,
                topology_id=topology_id,
                data=ReviewDecision(notes=notes or None),
                actor=principal,
            )
        else:
            service.reject(
                session, topology_id=topology_id, data=ReviewReject(notes=notes), actor=principal
            )
    except ValidationError as exc:
        errors = {f"review.{k}": v for k, v in validation_errors(exc).items()}
        if not approve and not notes:
            errors["review.notes"] = "Say why it is rejected"
        return _form_failed(request, session, principal, topology_id, values, errors, 422)
    except AppError as exc:
        refused(request, session, principal, exc)
        if exc.status == 404:
            raise
        return redirect(f"/topologies/{topology_id}", sentence(exc.message), "error")
    return redirect(
        f"/topologies/{topology_id}", "The topology is approved." if approve else "It is rejected."
    )


@router.post("/topologies/{topology_id}/approve")
def topology_approve(
    request: Request, topology_id: Id, session: DB, form: Form, principal: Reviewer
) -> Response:
    """Approve a submitted topology, with an optional comment."""
    return _decide(request, session, principal, topology_id, form, True)


@router.post("/topologies/{topology_id}/reject")
def topology_reject(
    request: Request, topology_id: Id, session: DB, form: Form, principal: Reviewer
) -> Response:
    """Reject a submitted topology, saying why."""
    return _decide(request, session, principal, topology_id, form, False)


# -- booking ---------------------------------------------------------------------------------


@router.post("/topologies/{topology_id}/book")
def topology_book(
    request: Request, topology_id: Id, session: DB, form: Form, principal: Drawer
) -> Response:
    """Book every device of the topology for one window, as one booking group."""
    tz = lab_timezone(session)
    values = {k: text(form, k, limit=2000) for k in ("start", "end", "comment", "now")}
    try:
        start = utcnow() if values["now"] else _parse_local(values["start"], tz, "start")
        data = TopologyBook(
            start=start,
            end=_parse_local(values["end"], tz, "end"),
            comment=values["comment"] or None,
        )
        created = service.book(session, topology_id=topology_id, data=data, actor=principal)
    except ValidationError as exc:
        errors = {f"book.{k}": v for k, v in validation_errors(exc).items()}
        return _form_failed(request, session, principal, topology_id, values, errors, 422)
    except AppError as exc:
        refused(request, session, principal, exc)
        if exc.status == 404:
            raise
        field = exc.details.get("field")
        known = {"start", "end", "comment"}
        if isinstance(field, str) and field.endswith((".start", ".end")):
            field = field.rsplit(".", 1)[1]
        key = f"book.{field}" if isinstance(field, str) and field in known else "book.__all__"
        errors = {key: sentence(exc.message)}
        return _form_failed(request, session, principal, topology_id, values, errors, exc.status)
    gid = created["grouped_booking_id"]
    state = STATUS_LABELS.get(str(created.get("status")), str(created.get("status")).lower())
    return redirect(f"/topologies/{topology_id}", f"Booked as group {gid} ({state}).")
