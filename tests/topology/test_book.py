"""Booking a topology: one call books all its devices as one group linked to it, under the
booking rules; a booked topology is protected from deletion and, while patched, redrawing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from labkeeper.booking.models import Booking
from labkeeper.inventory.models import MaintenanceWindow
from tests.topology.conftest import chain, error, ok, soon, start_now, window


def test_one_call_books_every_device_as_one_group_linked_to_the_topology(
    db, lab, make_user, as_user
):
    owner_account = make_user("member", username="owner")
    owner = as_user(owner_account)
    tid = ok(owner.post("/topologies", {"name": "t", **chain(lab, ["d1", "d2", "d3"])}), 201)["id"]
    start, end = window()
    created = ok(
        owner.post(
            f"/topologies/{tid}/book",
            {"start": start, "end": end, "comment": "exp 7", "collaborators": []},
        ),
        201,
    )
    gid = created["grouped_booking_id"]
    assert created["status"] == "CONFIRMED"
    assert sorted(b["device_id"] for b in created["bookings"]) == sorted(
        lab[n] for n in ("d1", "d2", "d3")
    )
    with db.scope(write=False) as s:
        rows = list(s.scalars(select(Booking).where(Booking.grouped_booking_id == gid)))
    assert {(r.topology_id, r.user_id, r.comment) for r in rows} == {
        (tid, owner_account.id, "exp 7")
    }
    group = ok(owner.get(f"/bookings/groups/{gid}"))
    assert group["topology_id"] == tid

    # The same devices cannot be booked twice over.
    clash = error(
        owner.post(f"/topologies/{tid}/book", {"start": start, "end": end}), 409, "booking_conflict"
    )
    assert len(clash["details"]["conflicts"]) == 3


def test_maintenance_someone_elses_topology_and_bad_bodies_are_refused(db, lab, make_user, as_user):
    owner, other = as_user(make_user("member")), as_user(make_user("member"))
    viewer = as_user(make_user("viewer"))
    tid = ok(owner.post("/topologies", {"name": "t", **chain(lab, ["d1", "d2"])}), 201)["id"]
    start, end = window()
    with db.scope() as s:
        s.add(
            MaintenanceWindow(
                device_id=lab["d2"],
                start_time=datetime.fromisoformat(start),
                end_time=datetime.fromisoformat(end),
                reason="laser swap",
            )
        )
    refused = error(
        owner.post(f"/topologies/{tid}/book", {"start": start, "end": end}), 409, "booking_conflict"
    )
    assert refused["details"]["conflicts"][0]["kind"] == "maintenance"
    assert refused["details"]["conflicts"][0]["device_id"] == lab["d2"]
    with db.scope(write=False) as s:
        assert s.scalar(select(Booking.id).where(Booking.topology_id == tid)) is None

    later_start, later_end = window(hours_from_now=48)
    error(
        other.post(f"/topologies/{tid}/book", {"start": later_start, "end": later_end}),
        404,
        "not_found",
    )
    error(
        viewer.post(f"/topologies/{tid}/book", {"start": later_start, "end": later_end}),
        403,
        "permission_denied",
    )
    error(
        owner.post(f"/topologies/{tid}/book", {"start": later_start[:19], "end": later_end}),
        422,
        "validation_error",
    )
    error(
        owner.post(f"/topologies/{tid}/book", {"start": later_end, "end": later_start}),
        422,
        "invalid_time_range",
    )
    empty = ok(owner.post("/topologies", {"name": "empty"}), 201)["id"]
    error(
        owner.post(f"/topologies/{empty}/book", {"start": later_start, "end": later_end}),
        422,
        "empty_topology",
    )


def test_a_booked_topology_cannot_be_deleted_nor_redrawn_while_patched(db, lab, make_user, as_user):
    owner = as_user(make_user("member"))
    tid = ok(owner.post("/topologies", {"name": "t", **chain(lab, ["d1", "d2"])}), 201)["id"]
    gid = ok(
        owner.post(
            f"/topologies/{tid}/book",
            {"start": soon().isoformat(), "end": window(hours_from_now=2)[0]},
        ),
        201,
    )["grouped_booking_id"]
    error(owner.delete(f"/topologies/{tid}"), 409, "topology_in_use")
    ok(owner.patch(f"/topologies/{tid}", chain(lab, ["d1", "d2", "d3"])))  # not started yet
    start_now(db, gid)
    busy = error(
        owner.patch(f"/topologies/{tid}", chain(lab, ["d1", "d3"])), 409, "topology_in_use"
    )
    assert busy["details"]["grouped_booking_ids"] == [gid]
    ok(owner.patch(f"/topologies/{tid}", {"description": "renaming is fine"}))
    ok(owner.post(f"/bookings/groups/{gid}/cancel", {}))
    assert owner.delete(f"/topologies/{tid}").status_code == 204
