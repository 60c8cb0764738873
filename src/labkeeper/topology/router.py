"""Topologies, their review, booking them, and the optical patches (cross-connects)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, Query, Response

from labkeeper.auth.deps import Principal, require
from labkeeper.auth.permissions import AUTHENTICATED
from labkeeper.booking.schemas import BookingCreated
from labkeeper.core.db import DbSession
from labkeeper.core.pagination import Page, PageParams, fetch_page, page_params
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import MAX_ID, Id
from labkeeper.topology import repository, service
from labkeeper.topology.schemas import (
    CrossConnectCreate,
    CrossConnectRead,
    PatchState,
    ReviewDecision,
    ReviewListItem,
    ReviewRead,
    ReviewReject,
    ReviewStatus,
    ReviewSubmit,
    TopologyBook,
    TopologyCreate,
    TopologyDetail,
    TopologyRead,
    TopologyUpdate,
)

router = APIRouter()
if TYPE_CHECKING:  # DbSession is built at run time; to mypy it is a plain Session.
    from sqlalchemy.orm import Session as DB
else:
    DB = DbSession
Drawer = Annotated[Principal, Depends(require("topologies:write"))]
Reviewer = Annotated[Principal, Depends(require("topologies:review"))]
Booker = Annotated[Principal, Depends(require("bookings:write"))]
Anyone = Annotated[Principal, Depends(require(AUTHENTICATED))]
Paging = Annotated[PageParams, Depends(page_params)]
GroupFilter = Annotated[str | None, Query(min_length=1, max_length=64)]


def _page(items: list[Any], total: int, page: PageParams) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset}


# -- topologies ----------------------------------------------------------------------------


@router.get("/topologies", response_model=Page[TopologyRead], tags=["topologies"])
def list_topologies(
    session: DB,
    principal: Drawer,
    page: Paging,
    scope: Literal["mine", "all"] = "mine",
    q: Annotated[str | None, Query(max_length=100, description="Part of the name")] = None,
    review: Literal["none", "submitted", "approved", "rejected"] | None = None,
) -> Any:
    """Your topologies (reviewers: scope=all for everyone's), newest change first."""
    items, total = service.list_topologies(
        session, actor=principal, everyone=scope == "all", q=q, review_status=review, page=page
    )
    return _page(items, total, page)


@router.post("/topologies", response_model=TopologyDetail, status_code=201, tags=["topologies"])
def create_topology(body: TopologyCreate, session: DB, principal: Drawer) -> Any:
    """Save a topology; 422 naming the node or edge at fault when it does not validate."""
    row = service.create_topology(session, data=body, actor=principal)
    return service.get_topology(session, topology_id=row.id, actor=principal)


@router.get("/topologies/{topology_id}", response_model=TopologyDetail, tags=["topologies"])
def get_topology(topology_id: Id, session: DB, principal: Drawer) -> Any:
    """One topology, with the switch patches its edges map to."""
    return service.get_topology(session, topology_id=topology_id, actor=principal)


@router.patch("/topologies/{topology_id}", response_model=TopologyDetail, tags=["topologies"])
def update_topology(topology_id: Id, body: TopologyUpdate, session: DB, principal: Drawer) -> Any:
    """Rename or redraw a topology (validated again; its review goes back to submitted)."""
    service.update_topology(session, topology_id=topology_id, data=body, actor=principal)
    return service.get_topology(session, topology_id=topology_id, actor=principal)


@router.delete("/topologies/{topology_id}", status_code=204, tags=["topologies"])
def delete_topology(topology_id: Id, session: DB, principal: Drawer) -> Response:
    """Delete a topology that no live booking uses."""
    service.delete_topology(session, topology_id=topology_id, actor=principal)
    return Response(status_code=204)


@router.post(
    "/topologies/{topology_id}/book",
    response_model=BookingCreated,
    status_code=201,
    tags=["topologies"],
)
def book_topology(topology_id: Id, body: TopologyBook, session: DB, principal: Drawer) -> Any:
    """Book all the topology's devices for one window as one group linked to it."""
    return service.book(session, topology_id=topology_id, data=body, actor=principal)


# -- review --------------------------------------------------------------------------------


@router.post("/topologies/{topology_id}/submit", response_model=ReviewRead, tags=["topologies"])
def submit_topology(topology_id: Id, body: ReviewSubmit, session: DB, principal: Drawer) -> Any:
    """Submit a topology for review over a window; its conflicts are computed and stored."""
    return service.submit(session, topology_id=topology_id, data=body, actor=principal)


@router.get("/topologies/{topology_id}/review", response_model=ReviewRead, tags=["topologies"])
def get_review(topology_id: Id, session: DB, principal: Drawer) -> Any:
    """The review of a topology, with its conflicts."""
    return service.get_review(session, topology_id=topology_id, actor=principal)


@router.post(
    "/topologies/{topology_id}/review/recheck", response_model=ReviewRead, tags=["topologies"]
)
def recheck_review(topology_id: Id, session: DB, principal: Drawer) -> Any:
    """Compute the review's conflicts again now."""
    return service.recheck(session, topology_id=topology_id, actor=principal)


@router.post(
    "/topologies/{topology_id}/review/approve", response_model=ReviewRead, tags=["topologies"]
)
def approve_review(topology_id: Id, body: ReviewDecision, session: DB, principal: Reviewer) -> Any:
    """Approve a submitted topology (approvers)."""
    return service.approve(session, topology_id=topology_id, data=body, actor=principal)


@router.post(
    "/topologies/{topology_id}/review/reject", response_model=ReviewRead, tags=["topologies"]
)
def reject_review(topology_id: Id, body: ReviewReject, session: DB, principal: Reviewer) -> Any:
    """Reject a submitted topology with notes saying why (approvers)."""
    return service.reject(session, topology_id=topology_id, data=body, actor=principal)


@router.get("/topology-reviews", response_model=Page[ReviewListItem], tags=["topologies"])
def list_reviews(session: DB, _: Reviewer, page: Paging, status: ReviewStatus | None = None) -> Any:
    """Reviews to act on (approvers), oldest first."""
    rows, total = fetch_page(session, repository.reviews_query(status=status), page, scalars=False)
    return _page([service.review_list_view(*r) for r in rows], total, page)


# -- cross-connects ------------------------------------------------------------------------


@router.get("/cross-connects", response_model=Page[CrossConnectRead], tags=["cross-connects"])
def list_cross_connects(
    session: DB,
    principal: Anyone,
    page: Paging,
    grouped_booking_id: GroupFilter = None,
    topology_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    switch_name: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    desired_state: PatchState | None = None,
    failing: bool | None = None,
) -> Any:
    """Optical patches with their states (a booking's: grouped_booking_id=...); without
    bookings:read, only those of your own bookings."""
    items, total = service.list_patches(
        session,
        actor=principal,
        filters={
            "grouped_booking_id": grouped_booking_id,
            "topology_id": topology_id,
            "switch_name": switch_name,
            "desired_state": desired_state,
            "failing": failing,
        },
        page=page,
    )
    return _page(items, total, page)


@router.get(
    "/cross-connects/{cross_connect_id}", response_model=CrossConnectRead, tags=["cross-connects"]
)
def get_cross_connect(cross_connect_id: Id, session: DB, principal: Anyone) -> Any:
    """One patch and its state."""
    return service.get_patch(session, cross_connect_id=cross_connect_id, actor=principal)


@router.post(
    "/cross-connects", response_model=CrossConnectRead, status_code=201, tags=["cross-connects"]
)
def create_cross_connect(body: CrossConnectCreate, session: DB, principal: Booker) -> Any:
    """Patch two devices of your active booking by hand; applied within seconds."""
    row = service.add_patch(session, data=body, actor=principal)
    return service.patch_views(session, [row])[0]


@router.delete(
    "/cross-connects/{cross_connect_id}", response_model=CrossConnectRead, tags=["cross-connects"]
)
def delete_cross_connect(cross_connect_id: Id, session: DB, principal: Booker) -> Any:
    """Take a patch of your booking down by hand; removed within seconds."""
    row = service.remove_patch(session, cross_connect_id=cross_connect_id, actor=principal)
    return service.patch_views(session, [row])[0]
