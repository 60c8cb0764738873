"""Drawing topologies: saved with their layout, validated on save with errors that name the
node or edge at fault, private to their owner, listed at a constant cost."""

from __future__ import annotations

import contextlib

from sqlalchemy import event, func, select

from labkeeper.admin.models import AuditLog
from tests.topology.conftest import (
    SWITCH,
    chain,
    edge,
    error,
    in_port,
    node,
    ok,
    out_port,
)


def test_save_read_update_and_delete_keep_layout_and_map_edges_to_ports(
    db, lab, make_user, as_user
):
    alice = as_user(make_user("member", username="alice"))
    body = {
        "name": "ring",
        "description": "three servers in a ring",
        "nodes": [
            node("d1", lab, x=1.5, y=-2.0, params={"role": "tx"}),
            node("d2", lab, x=100.0, y=50.0),
            node("d3", lab, kind="roadm"),
        ],
        "edges": [
            edge("a", "d1", "d2", params={"wavelength_nm": 1550.12}),
            edge("b", "d2", "d3"),
            edge("c", "d3", "d1"),
        ],
    }
    saved = ok(alice.post("/topologies", body), 201)
    assert saved["name"] == "ring" and saved["username"] == "alice" and saved["review"] is None
    assert saved["nodes"][0] == {
        "id": "d1",
        "device_id": lab["d1"],
        "kind": "server",
        "params": {"role": "tx"},
        "x": 1.5,
        "y": -2.0,
    }
    assert saved["edges"][0]["params"] == {"wavelength_nm": 1550.12}
    # Edge a: d1's output port -> d2's input port, on their common switch.
    assert saved["patches"] == [
        {
            "edge": "a",
            "switch_name": SWITCH,
            "ingress_port": out_port(1),
            "egress_port": in_port(2),
        },
        {
            "edge": "b",
            "switch_name": SWITCH,
            "ingress_port": out_port(2),
            "egress_port": in_port(3),
        },
        {
            "edge": "c",
            "switch_name": SWITCH,
            "ingress_port": out_port(3),
            "egress_port": in_port(1),
        },
    ]
    tid = saved["id"]
    assert ok(alice.get(f"/topologies/{tid}"))["nodes"] == saved["nodes"]

    moved = ok(
        alice.patch(
            f"/topologies/{tid}",
            {"name": "ring-2", "nodes": body["nodes"][:2], "edges": body["edges"][:1]},
        )
    )
    assert moved["name"] == "ring-2" and [p["edge"] for p in moved["patches"]] == ["a"]
    listed = ok(alice.get("/topologies"))
    assert listed["total"] == 1 and listed["items"][0]["name"] == "ring-2"

    assert alice.delete(f"/topologies/{tid}").status_code == 204
    assert alice.get(f"/topologies/{tid}").status_code == 404
    with db.scope(write=False) as s:
        actions = list(
            s.scalars(
                select(AuditLog.action)
                .where(AuditLog.entity_type == "topology", AuditLog.entity_id == str(tid))
                .order_by(AuditLog.id)
            )
        )
    assert actions == ["topologies.create", "topologies.update", "topologies.delete"]


def test_bad_drawings_are_refused_naming_the_node_or_edge(lab, make_user, as_user):
    bob = as_user(make_user("member"))

    def refused(nodes, edges, code):
        body = error(
            bob.post("/topologies", {"name": "t", "nodes": nodes, "edges": edges}), 422, code
        )
        return body["details"]

    d1, d2, d3 = node("d1", lab), node("d2", lab), node("d3", lab)
    ghost = {"id": "ghost", "device_id": 999_999}
    details = refused([d1, ghost], [], "unknown_device")
    assert details["node"] == "ghost" and details["device_id"] == 999_999

    details = refused([d1, d2], [edge("e1", "d1", "d2"), edge("e2", "d1", "d9")], "unknown_node")
    assert details["edge"] == "e2" and details["node"] == "d9"

    # A second edge out of d1 needs d1's output port a second time.
    details = refused([d1, d2, d3], [edge("e1", "d1", "d2"), edge("e3", "d1", "d3")], "port_reused")
    assert details["edge"] == "e3" and details["other_edge"] == "e1"
    assert details["port"] == out_port(1) and details["switch_name"] == SWITCH

    details = refused([d1, node("far", lab)], [edge("x", "d1", "far")], "different_switches")
    assert details["edge"] == "x"
    details = refused([d1, node("loose", lab)], [edge("y", "loose", "d1")], "edge_not_patchable")
    assert details["edge"] == "y" and details["device_id"] == lab.extra["loose"]
    details = refused([node("pdu", lab)], [], "device_not_schedulable")
    assert details["node"] == "pdu"
    details = refused([d1, {**d2, "id": "d1"}], [], "duplicate_node")
    assert details["node"] == "d1"
    details = refused([d1, {**d1, "id": "again"}], [], "duplicate_device")
    assert details["node"] == "again"
    details = refused([d1], [edge("z", "d1", "d1")], "self_loop")

    # Every problem is listed, not only the first.
    details = refused(
        [d1, d2, ghost], [edge("e1", "d1", "d2"), edge("e2", "d1", "d2")], "unknown_device"
    )
    assert [(p["code"], p.get("node"), p.get("edge")) for p in details["problems"]] == [
        ("unknown_device", "ghost", None),
        ("port_reused", None, "e2"),
    ]
    for bad in (
        {"name": "t", "nodes": [{"id": "n", "device_id": lab["d1"], "x": "far"}]},
        {"name": "t", "nodes": [{"id": "", "device_id": lab["d1"]}]},
        {"name": "t", "nodes": [{**d1, "params": {"blob": "x" * 5000}}]},
        {"name": "t", "nodes": [d1], "owner": 3},
        {"name": ""},
    ):
        assert bob.post("/topologies", bad).status_code == 422, bad


def test_someone_elses_topology_is_hidden_and_reviewers_may_look_but_not_touch(
    lab, make_user, as_user
):
    owner = as_user(make_user("member", username="owner"))
    other = as_user(make_user("member"))
    approver = as_user(make_user("approver"))
    admin = as_user(make_user("admin"))
    viewer = as_user(make_user("viewer"))
    tid = ok(owner.post("/topologies", {"name": "mine", **chain(lab, ["d1", "d2"])}), 201)["id"]

    error(other.get(f"/topologies/{tid}"), 404, "not_found")
    error(other.patch(f"/topologies/{tid}", {"name": "stolen"}), 404, "not_found")
    error(other.delete(f"/topologies/{tid}"), 404, "not_found")
    assert ok(other.get("/topologies"))["total"] == 0
    error(other.get("/topologies", params={"scope": "all"}), 403, "not_a_reviewer")
    error(viewer.get("/topologies"), 403, "permission_denied")

    assert ok(approver.get(f"/topologies/{tid}"))["name"] == "mine"
    assert ok(approver.get("/topologies", params={"scope": "all"}))["total"] == 1
    error(approver.patch(f"/topologies/{tid}", {"name": "x"}), 403, "not_your_topology")
    assert ok(admin.patch(f"/topologies/{tid}", {"name": "fixed"}))["name"] == "fixed"


def test_saved_topology_reports_problems_when_the_inventory_changes(db, lab, make_user, as_user):
    owner = as_user(make_user("member"))
    tid = ok(owner.post("/topologies", {"name": "t", **chain(lab, ["d1", "d2"])}), 201)["id"]
    from labkeeper.inventory.models import Device

    with db.scope() as s:
        s.get(Device, lab["d2"]).switch_in_port = None
    found = ok(owner.get(f"/topologies/{tid}"))
    assert found["patches"] == []
    assert found["problems"][0]["code"] == "edge_not_patchable"
    assert found["problems"][0]["edge"] == "e1"


@contextlib.contextmanager
def _counting(engine):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_topology_list_costs_the_same_queries_for_2_and_40_topologies(db, lab, make_user, as_user):
    from labkeeper.topology.models import Topology, TopologyReview

    account = make_user("member")
    owner = as_user(account)

    def add(n, start):
        with db.scope() as s:
            rows = [
                Topology(user_id=account.id, name=f"t{i}", nodes=[], edges=[])
                for i in range(start, start + n)
            ]
            s.add_all(rows)
            s.flush()
            s.add_all(TopologyReview(topology_id=t.id, status="submitted") for t in rows[::2])

    add(2, 0)
    ok(owner.get("/topologies"))  # warm up
    with _counting(db.engine) as few:
        page = ok(owner.get("/topologies", params={"limit": 500}))
    assert page["total"] == 2
    add(38, 2)
    with _counting(db.engine) as many:
        page = ok(owner.get("/topologies", params={"limit": 500}))
    assert page["total"] == 40 and sum(1 for t in page["items"] if t["review"]) == 20
    assert len(many) == len(few) <= 6, many
    with db.scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Topology)) == 40
