"""Reviewing topologies: conflicts computed by the server for a window, approvers decide with
notes, re-checked on demand, by the periodic job, and when the drawing changes."""

from __future__ import annotations

from datetime import datetime

from labkeeper.inventory.models import MaintenanceWindow
from labkeeper.topology import service
from tests.topology.conftest import chain, edge, error, node, ok, out_port, window


def test_conflicts_name_bookings_maintenance_and_clashing_patches(db, lab, make_user, as_user):
    alice_account = make_user("member", username="alice")
    alice, bob, carol = (
        as_user(alice_account),
        as_user(make_user("member", username="bob")),
        as_user(make_user("member", username="carol")),
    )
    start, end = window(hours_from_now=24, length=4)
    # Bob books a topology d4 -> d5 over the window: his group will patch d4's output port.
    bob_topology = ok(bob.post("/topologies", {"name": "b", **chain(lab, ["d4", "d5"])}), 201)["id"]
    ok(bob.post(f"/topologies/{bob_topology}/book", {"start": start, "end": end}), 201)
    # Carol holds d2 for part of the window; Alice holds d1 herself (not a conflict for her).
    ok(
        carol.post("/bookings", {"items": [{"device_id": lab["d2"], "start": start, "end": end}]}),
        201,
    )
    ok(
        alice.post("/bookings", {"items": [{"device_id": lab["d1"], "start": start, "end": end}]}),
        201,
    )
    with db.scope() as s:
        s.add(
            MaintenanceWindow(
                device_id=lab["d3"],
                start_time=datetime.fromisoformat(start),
                end_time=datetime.fromisoformat(end),
                reason="fibre cleaning",
            )
        )
    body = {
        "name": "mine",
        "nodes": [node(n, lab) for n in ("d1", "d2", "d3", "d4")],
        "edges": [edge("e1", "d1", "d2"), edge("e2", "d2", "d3"), edge("e3", "d4", "d1")],
    }
    tid = ok(alice.post("/topologies", body), 201)["id"]
    review = ok(alice.post(f"/topologies/{tid}/submit", {"window_start": start, "window_end": end}))
    assert review["status"] == "submitted" and review["submitted_by"] == alice_account.id
    kinds = sorted((c["kind"], c.get("node") or c.get("edge")) for c in review["conflicts"])
    assert kinds == [("booking", "d2"), ("booking", "d4"), ("maintenance", "d3"), ("patch", "e3")]
    assert review["conflict_count"] == 4
    clash = next(c for c in review["conflicts"] if c["kind"] == "patch")
    assert clash["port"] == out_port(4) and clash["patch"].startswith(f"{out_port(4)}->")
    by_carol = next(c for c in review["conflicts"] if c.get("node") == "d2")
    assert by_carol["username"] == "carol" and by_carol["status"] == "CONFIRMED"
    assert ok(alice.get("/topologies"))["items"][0]["review"]["conflict_count"] == 4

    # Carol's booking goes away: a re-check on demand sees it.
    gid = ok(carol.get("/bookings/mine"))["items"][0]["grouped_booking_id"]
    ok(carol.post(f"/bookings/groups/{gid}/cancel", {}))
    rechecked = ok(alice.post(f"/topologies/{tid}/review/recheck"))
    assert rechecked["conflict_count"] == 3
    assert all(c.get("node") != "d2" for c in rechecked["conflicts"])


def test_approvers_decide_with_notes_and_redrawing_reopens_the_review(db, lab, make_user, as_user):
    owner = as_user(make_user("member", username="owner"))
    approver_account = make_user("approver", username="judge")
    approver, member = as_user(approver_account), as_user(make_user("member"))
    start, end = window()
    tid = ok(owner.post("/topologies", {"name": "t", **chain(lab, ["d1", "d2"])}), 201)["id"]
    error(owner.get(f"/topologies/{tid}/review"), 404, "not_found")
    ok(owner.post(f"/topologies/{tid}/submit", {"window_start": start, "window_end": end}))

    queue = ok(approver.get("/topology-reviews", params={"status": "submitted"}))
    assert [(r["topology_name"], r["owner_username"]) for r in queue["items"]] == [("t", "owner")]
    error(member.post(f"/topologies/{tid}/review/approve", {}), 403, "permission_denied")
    error(approver.post(f"/topologies/{tid}/review/reject", {}), 422, "validation_error")
    decided = ok(approver.post(f"/topologies/{tid}/review/approve", {"notes": "looks fine"}))
    assert decided["status"] == "approved" and decided["notes"] == "looks fine"
    assert decided["resolved_by"] == approver_account.id and decided["resolved_at"]
    error(
        approver.post(f"/topologies/{tid}/review/reject", {"notes": "no"}),
        409,
        "invalid_transition",
    )

    # Renaming keeps the decision; redrawing sends it back to submitted, re-checked.
    ok(owner.patch(f"/topologies/{tid}", {"name": "t2"}))
    assert ok(owner.get(f"/topologies/{tid}/review"))["status"] == "approved"
    ok(owner.patch(f"/topologies/{tid}", chain(lab, ["d1", "d2", "d3"])))
    reopened = ok(owner.get(f"/topologies/{tid}/review"))
    assert reopened["status"] == "submitted" and reopened["resolved_by"] is None
    rejected = ok(approver.post(f"/topologies/{tid}/review/reject", {"notes": "d3 is for class"}))
    assert rejected["status"] == "rejected" and rejected["notes"] == "d3 is for class"

    # A reviewer does not decide on their own topology.
    own = ok(approver.post("/topologies", {"name": "own", **chain(lab, ["d5", "d6"])}), 201)["id"]
    ok(approver.post(f"/topologies/{own}/submit", {"window_start": start, "window_end": end}))
    error(approver.post(f"/topologies/{own}/review/approve", {}), 403, "own_topology")


def test_submit_refuses_bad_windows(lab, make_user, as_user):
    owner = as_user(make_user("member"))
    tid = ok(owner.post("/topologies", {"name": "t", **chain(lab, ["d1", "d2"])}), 201)["id"]
    start, end = window()
    error(
        owner.post(f"/topologies/{tid}/submit", {"window_start": end, "window_end": start}),
        422,
        "invalid_time_range",
    )
    past_start, past_end = window(hours_from_now=-5)
    error(
        owner.post(
            f"/topologies/{tid}/submit", {"window_start": past_start, "window_end": past_end}
        ),
        422,
        "window_in_past",
    )
    naive = start[:19]
    error(
        owner.post(f"/topologies/{tid}/submit", {"window_start": naive, "window_end": end}),
        422,
        "validation_error",
    )
    empty = ok(owner.post("/topologies", {"name": "empty"}), 201)["id"]
    error(
        owner.post(f"/topologies/{empty}/submit", {"window_start": start, "window_end": end}),
        422,
        "empty_topology",
    )


def test_the_periodic_recheck_follows_new_maintenance(db, lab, make_user, as_user):
    owner = as_user(make_user("member"))
    start, end = window()
    tid = ok(owner.post("/topologies", {"name": "t", **chain(lab, ["d1", "d2"])}), 201)["id"]
    ok(owner.post(f"/topologies/{tid}/submit", {"window_start": start, "window_end": end}))
    with db.scope() as s:
        s.add(
            MaintenanceWindow(
                device_id=lab["d1"],
                start_time=datetime.fromisoformat(start),
                end_time=datetime.fromisoformat(end),
                created_by=None,
            )
        )
    with db.scope() as s:
        assert service.recheck_open_reviews(s) == (1, 1)
    with db.scope() as s:
        assert service.recheck_open_reviews(s) == (1, 0)  # nothing new the second time
    review = ok(owner.get(f"/topologies/{tid}/review"))
    assert review["conflict_count"] == 1 and review["conflicts"][0]["kind"] == "maintenance"
