"""Reconcile: every switch is compared with the database and converged; patches labkeeper
owns are put back or taken away, patches it does not own are reported and left alone."""

from __future__ import annotations

from labkeeper.topology import provision
from tests.topology.conftest import (
    book_topology,
    in_port,
    ok,
    out_port,
    patches,
    run_task,
    start_now,
)


def test_reconcile_restores_removes_and_reports_without_touching_foreign_patches(
    db, lab, sim, make_user, as_user
):
    owner = as_user(make_user("member"))
    _, live = book_topology(owner, lab, ["d1", "d2", "d3"])
    _, ending = book_topology(owner, lab, ["d5", "d6"])
    start_now(db, live)  # both groups start
    provision.provision(db)
    mine = {out_port(1): in_port(2), out_port(2): in_port(3), out_port(5): in_port(6)}
    assert sim.cross_connects == mine
    # The group of d5 -> d6 ends while no provisioning runs; meanwhile someone removes a patch
    # of the live group on the switch and makes two of their own.
    ok(owner.post(f"/bookings/groups/{ending}/cancel", {}))
    foreign = {40: 41, 50: 51}
    sim.set_cross_connects({out_port(1): in_port(2), out_port(5): in_port(6), **foreign})

    edits = sim.rpc_counts["edit-config"]
    run, entries = run_task(db, "topology.reconcile")
    assert run.status == "succeeded", run.message
    assert sim.cross_connects == {out_port(1): in_port(2), out_port(2): in_port(3), **foreign}
    assert sim.rpc_counts["edit-config"] == edits + 1  # one batched edit
    assert run.result["added"] == 1 and run.result["removed"] == 1 and run.result["foreign"] == 2
    reported = sorted(
        (e.details["ingress"], e.details["egress"])
        for e in entries
        if e.category == "foreign_patch"
    )
    assert reported == [(40, 41), (50, 51)]
    assert all(e.level == "warning" for e in entries if e.category == "foreign_patch")
    rows = {(r.ingress_port, r.egress_port): r for r in patches(db)}
    assert rows[(out_port(2), in_port(3))].actual_state == "present"
    assert rows[(out_port(5), in_port(6))].actual_state == "absent"

    # A second pass finds nothing to change.
    again = provision.reconcile(db)
    assert (again["added"], again["removed"], again["foreign"]) == (0, 0, 2)
    assert sim.rpc_counts["edit-config"] == edits + 1


def test_reconcile_records_what_the_switch_refuses(db, lab, sim, make_user, as_user):
    owner = as_user(make_user("member"))
    _, gid = book_topology(owner, lab, ["d1", "d2"])
    start_now(db, gid)
    provision.provision(db)
    sim.refuse_edits("maintenance mode")
    sim.set_cross_connects({})  # the patch vanished; putting it back is refused
    run, entries = run_task(db, "topology.reconcile")
    assert run.status == "failed"
    [row] = patches(db, gid)
    assert row.actual_state == "absent" and row.last_error == "maintenance mode"
    assert any("maintenance mode" in e.message for e in entries if e.level == "error")
