"""Patches by hand: only during an active booking, only between devices of that booking, only
by its owner or an admin; they come and go through the same provisioning as topologies."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from labkeeper.core.time import utcnow
from labkeeper.jobs.models import JobLog
from labkeeper.topology import provision
from tests.topology.conftest import (
    SWITCH,
    error,
    in_port,
    ok,
    out_port,
    patches,
    soon,
    start_now,
)


def _book(api, lab, names, *, now=True):
    start = soon() if now else utcnow() + timedelta(days=1)
    items = [
        {
            "device_id": lab[n],
            "start": start.isoformat(),
            "end": (start + timedelta(hours=2)).isoformat(),
        }
        for n in names
    ]
    return ok(api.post("/bookings", {"items": items}), 201)["grouped_booking_id"]


def test_owner_patches_and_unpatches_booked_devices_by_hand(db, lab, sim, make_user, as_user):
    owner = as_user(make_user("member", username="owner"))
    gid = _book(owner, lab, ["d1", "d2", "d3"])
    start_now(db, gid)
    made = ok(
        owner.post(
            "/cross-connects",
            {
                "grouped_booking_id": gid,
                "source_device_id": lab["d1"],
                "target_device_id": lab["d2"],
            },
        ),
        201,
    )
    assert (made["switch_name"], made["ingress_port"], made["egress_port"]) == (
        SWITCH,
        out_port(1),
        in_port(2),
    )
    assert made["status"] == "pending" and made["topology_id"] is None
    by_ports = ok(
        owner.post(
            "/cross-connects",
            {
                "grouped_booking_id": gid,
                "switch_name": SWITCH,
                "ingress_port": out_port(2),
                "egress_port": in_port(3),
            },
        ),
        201,
    )
    provision.provision(db)
    assert sim.cross_connects == {out_port(1): in_port(2), out_port(2): in_port(3)}
    assert ok(owner.get(f"/cross-connects/{made['id']}"))["status"] == "applied"

    gone = ok(owner.delete(f"/cross-connects/{by_ports['id']}"))
    assert gone["desired_state"] == "absent" and gone["status"] == "removing"
    assert ok(owner.delete(f"/cross-connects/{by_ports['id']}"))["status"] == "removing"
    provision.provision(db)
    assert sim.cross_connects == {out_port(1): in_port(2)}
    # Made again: the same row wants it again.
    again = ok(
        owner.post(
            "/cross-connects",
            {
                "grouped_booking_id": gid,
                "source_device_id": lab["d2"],
                "target_device_id": lab["d3"],
            },
        ),
        201,
    )
    assert again["id"] == by_ports["id"] and again["desired_state"] == "present"

    # The booking ends: patches made by hand go with it.
    ok(owner.post(f"/bookings/groups/{gid}/cancel", {}))
    provision.provision(db)
    assert sim.cross_connects == {}
    assert {r.actual_state for r in patches(db, gid)} == {"absent"}


def test_only_booked_ports_of_an_active_booking_and_only_owners_or_admins(
    db, lab, make_user, as_user
):
    owner = as_user(make_user("member", username="owner"))
    stranger, approver = as_user(make_user("member")), as_user(make_user("approver"))
    admin, viewer = as_user(make_user("admin")), as_user(make_user("viewer"))
    gid = _book(owner, lab, ["d1", "d2", "d3"])
    later = _book(owner, lab, ["d5", "d6"], now=False)
    _book(stranger, lab, ["d4"])  # d4 is busy, but not in the owner's booking
    start_now(db, gid)

    def post(api, **body):
        return api.post("/cross-connects", {"grouped_booking_id": gid, **body})

    pair = {"source_device_id": lab["d1"], "target_device_id": lab["d2"]}
    error(post(stranger, **pair), 404, "not_found")
    error(post(approver, **pair), 403, "not_your_booking")
    error(post(viewer, **pair), 403, "permission_denied")
    error(
        post(owner, source_device_id=lab["d1"], target_device_id=lab["d4"]),
        403,
        "device_not_booked",
    )
    error(
        post(owner, switch_name=SWITCH, ingress_port=out_port(4), egress_port=in_port(1)),
        403,
        "port_not_booked",
    )
    error(
        post(owner, switch_name=SWITCH, ingress_port=63, egress_port=in_port(1)),
        422,
        "unknown_port",
    )
    error(post(owner, source_device_id=lab["d1"], target_device_id=999_999), 422, "unknown_device")
    error(post(owner, source_device_id=lab["d1"]), 422, "validation_error")
    error(post(owner, source_device_id=lab["d1"], switch_name=SWITCH), 422, "validation_error")
    error(
        owner.post(
            "/cross-connects",
            {
                "grouped_booking_id": later,
                "source_device_id": lab["d5"],
                "target_device_id": lab["d6"],
            },
        ),
        409,
        "booking_not_active",
    )
    error(
        owner.post(
            "/cross-connects",
            {"grouped_booking_id": "no-such-group", **pair},
        ),
        404,
        "not_found",
    )

    made = ok(post(admin, **pair), 201)  # admins may patch anyone's active booking
    ok(owner.delete(f"/cross-connects/{made['id']}"))
    made = ok(post(owner, **pair), 201)
    with db.scope(write=False) as s:
        runs = list(s.scalars(select(JobLog.status).where(JobLog.job_type == "topology.provision")))
    assert runs == ["queued"]  # each change asks for a run; one waiting run is enough
    error(post(owner, **pair), 409, "already_exists")
    error(post(owner, source_device_id=lab["d3"], target_device_id=lab["d2"]), 409, "port_in_use")
    # Others do not see the patch; readers see but cannot remove it.
    assert ok(stranger.get("/cross-connects"))["total"] == 0
    error(stranger.get(f"/cross-connects/{made['id']}"), 404, "not_found")
    error(stranger.delete(f"/cross-connects/{made['id']}"), 404, "not_found")
    assert ok(approver.get(f"/cross-connects/{made['id']}"))["id"] == made["id"]
    error(approver.delete(f"/cross-connects/{made['id']}"), 403, "not_your_booking")
    assert ok(owner.get("/cross-connects", params={"grouped_booking_id": gid}))["total"] == 1
    assert ok(approver.get("/cross-connects", params={"failing": "false"}))["total"] == 1
