"""Provisioning against the switch simulator: an ACTIVE topology group gets its patches in one
batched edit-config and loses them when it ends; failures are recorded with the switch's own
message, retried with backoff, logged in the job log and sent to the admin channel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from labkeeper.admin import service as settings_service
from labkeeper.core.audit import SYSTEM
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device
from labkeeper.jobs.models import JobLog
from labkeeper.topology import provision
from labkeeper.topology.models import CrossConnect
from tests.topology.conftest import (
    book_topology,
    end_now,
    in_port,
    ok,
    out_port,
    patches,
    run_task,
    start_now,
)


def _retry_now(db) -> None:
    """Skip the backoff wait (as if its time had come)."""
    with db.scope() as s:
        s.execute(update(CrossConnect).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_active_topology_is_patched_in_one_edit_and_unpatched_when_it_ends(
    db, lab, sim, make_user, as_user
):
    owner = as_user(make_user("member", username="owner"))
    _, gid = book_topology(owner, lab, ["d1", "d2", "d3"])
    provision.provision(db)
    assert patches(db) == [] and sim.cross_connects == {}  # confirmed, not active yet

    start_now(db, gid)
    result = provision.provision(db)
    assert result["recorded"] == 2 and result["added"] == 2 and result["failed"] == 0
    assert sim.cross_connects == {out_port(1): in_port(2), out_port(2): in_port(3)}
    assert sim.rpc_counts["edit-config"] == 1
    rows = patches(db, gid)
    assert [(r.desired_state, r.actual_state, r.attempts, r.last_error) for r in rows] == [
        ("present", "present", 1, None)
    ] * 2
    assert all(r.applied_at is not None and r.topology_id is not None for r in rows)
    shown = ok(owner.get("/cross-connects", params={"grouped_booking_id": gid}))
    assert shown["total"] == 2
    assert {(p["ingress_device"], p["egress_device"], p["status"]) for p in shown["items"]} == {
        ("d1", "d2", "applied"),
        ("d2", "d3", "applied"),
    }

    provision.provision(db)  # nothing to do: the switch is not even asked
    assert sim.rpc_counts["edit-config"] == 1 and len(patches(db)) == 2

    end_now(db, gid)
    result = provision.provision(db)
    assert result["released"] == 2 and result["removed"] == 2
    assert sim.cross_connects == {}
    rows = patches(db, gid)
    assert {(r.desired_state, r.actual_state) for r in rows} == {("absent", "absent")}
    assert all(r.removed_at is not None for r in rows)
    assert {p["status"] for p in ok(owner.get("/cross-connects"))["items"]} == {"removed"}


def test_a_refused_edit_fails_with_the_switch_message_and_is_retried_with_backoff(
    db, lab, sim, make_user, as_user
):
    owner = as_user(make_user("member"))
    with db.scope() as s:
        settings_service.put(
            s,
            key="notifications.discord_admin_webhook",
            value="https://discord.invalid/x",
            actor=SYSTEM,
        )
    _, gid = book_topology(owner, lab, ["d1", "d2"])
    start_now(db, gid)
    sim.refuse_edits("OPTICAL PORT 2 SHUTTER CLOSED")
    run, entries = run_task(db, "topology.provision")
    assert run.status == "failed" and "failed" in run.message
    [row] = patches(db, gid)
    assert row.actual_state == "absent" and row.attempts == 1
    assert row.last_error == "OPTICAL PORT 2 SHUTTER CLOSED"
    wait = (row.next_attempt_at - utcnow()).total_seconds()
    assert 0 < wait <= 2.0
    errors = [e for e in entries if e.level == "error"]
    assert any("OPTICAL PORT 2 SHUTTER CLOSED" in e.message for e in errors)
    assert errors[0].details["grouped_booking_id"] == gid
    status = ok(owner.get("/cross-connects", params={"grouped_booking_id": gid}))["items"][0]
    assert status["status"] == "failed" and status["last_error"] == "OPTICAL PORT 2 SHUTTER CLOSED"
    with db.scope(write=False) as s:
        alerts = list(s.scalars(select(JobLog).where(JobLog.job_type == "notify.deliver")))
    assert len(alerts) == 1 and alerts[0].params["channel"] == "discord_admin"
    assert "OPTICAL PORT 2 SHUTTER CLOSED" in alerts[0].params["text"]

    edits = sim.rpc_counts["edit-config"]
    provision.provision(db)  # within the backoff: left alone
    assert sim.rpc_counts["edit-config"] == edits and patches(db, gid)[0].attempts == 1

    _retry_now(db)
    provision.provision(db)  # still refused: the wait doubles, no second alert
    [row] = patches(db, gid)
    assert row.attempts == 2 and 2.0 < (row.next_attempt_at - utcnow()).total_seconds() <= 4.0
    sim.mode = "normal"
    _retry_now(db)
    provision.provision(db)
    [row] = patches(db, gid)
    assert (row.actual_state, row.last_error, row.next_attempt_at) == ("present", None, None)
    assert sim.cross_connects == {out_port(1): in_port(2)}
    with db.scope(write=False) as s:
        assert (
            len(list(s.scalars(select(JobLog.id).where(JobLog.job_type == "notify.deliver")))) == 1
        )


def test_one_bad_patch_does_not_hold_back_the_others(db, lab, sim, make_user, as_user):
    owner = as_user(make_user("member"))
    _, gid = book_topology(owner, lab, ["d1", "d2", "d3", "d4"])
    start_now(db, gid)
    # Someone patched d3's input by hand on the switch: labkeeper does not own that patch.
    sim.set_cross_connects({60: in_port(3)})
    sim.fail_next(1, "transient hiccup")  # and the first batch is refused as a whole
    provision.provision(db)
    rows = {(r.ingress_port, r.egress_port): r for r in patches(db, gid)}
    good = [(out_port(1), in_port(2)), (out_port(3), in_port(4))]
    assert all(rows[p].actual_state == "present" and rows[p].last_error is None for p in good)
    blocked = rows[(out_port(2), in_port(3))]
    assert blocked.actual_state == "absent"
    assert (
        blocked.last_error
        == f"port in use on the switch by patch 60->{in_port(3)}, which labkeeper does not own"
    )
    assert sim.cross_connects == {60: in_port(3), **dict(good)}


@pytest.mark.parametrize("fault", ["closed", "hang", "auth"])
def test_a_switch_that_does_not_answer_leaves_a_failed_state(
    db, lab, sim, make_user, as_user, fault
):
    owner = as_user(make_user("member"))
    with db.scope() as s:
        settings_service.put(s, key="optical.timeout_seconds", value=0.5, actor=SYSTEM)
        switch = s.get(Device, lab.switch_id)
        if fault == "closed":
            switch.ssh_port = 1
        elif fault == "auth":
            sim.password = "changed"
    if fault == "hang":
        sim.mode = "hang"
    _, gid = book_topology(owner, lab, ["d1", "d2"])
    start_now(db, gid)
    result = provision.provision(db)
    assert result["failed"] == 1 and result["errors"]
    [row] = patches(db, gid)
    assert row.actual_state == "unknown" and row.attempts == 1
    expected = {"closed": "127.0.0.1:1", "hang": "timed out", "auth": "authentication failed"}
    assert expected[fault] in row.last_error, row.last_error
    assert sim.cross_connects == {}


def test_a_switch_missing_from_the_inventory_is_a_failed_state_too(db, lab, make_user, as_user):
    owner = as_user(make_user("member"))
    with db.scope() as s:
        s.get(Device, lab.switch_id).platform = "cisco_ios"  # no longer a Polatis switch
    _, gid = book_topology(owner, lab, ["d1", "d2"])
    start_now(db, gid)
    provision.provision(db)
    [row] = patches(db, gid)
    assert "switch 'sw1' is not in the inventory" in row.last_error
