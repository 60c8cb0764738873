"""Devices: the stable create interface, refusals, history, delete guard, filters, query count."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from sqlalchemy import event, func, select

from labkeeper.admin.models import AuditLog
from labkeeper.booking.models import Booking
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import (
    DeviceHistory,
    DeviceOwnership,
    DeviceTag,
    MaintenanceWindow,
    Tag,
)
from tests.inventory.conftest import insert_devices


def _audit(db, action):
    with db.scope(write=False) as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


def _book(db, device_id, user_id, start, end, status="CONFIRMED"):
    with db.scope() as s:
        row = Booking(
            grouped_booking_id=f"g-{device_id}-{start.timestamp()}",
            device_id=device_id,
            user_id=user_id,
            start_time=start,
            end_time=end,
            status=status,
        )
        s.add(row)
        s.flush()
        return row.id


def test_create_device_with_the_documented_body(api, db, admin):
    made_type = api.ok(
        api.post(
            "/device-types",
            {"name": "ROADM", "category": "optical", "is_schedulable": True, "has_ports": True},
        ),
        201,
    )
    assert made_type["category"] == "optical" and made_type["has_ports"] is True
    api.tag("core")
    api.tag("optical-lab", color="#12ab9F")
    api.site("Dublin")
    r = api.post(
        "/devices",
        {
            "name": "roadm-1",
            "device_type": "roadm",  # names are matched without regard to case
            "platform": "polatis",
            "mgmt_address": "10.0.0.5",
            "ssh_port": 830,
            "switch_name": "polatis-1",
            "switch_in_port": 3,
            "switch_out_port": 19,
            "tags": ["core", "Optical-Lab"],
            "site": "dublin",
            "serial": "SN-1",
        },
    )
    device = api.ok(r, 201)
    assert isinstance(device["id"], int)
    assert device["device_type"]["name"] == "ROADM" and device["site"]["name"] == "Dublin"
    assert device["status"] == "available" and device["reachability"] == "unknown"
    assert {t["name"]: t["source"] for t in device["tags"]} == {
        "core": "manual",
        "optical-lab": "manual",
    }
    got = api.ok(api.get(f"/devices/{device['id']}"))
    assert got["switch_in_port"] == 3 and got["ssh_port"] == 830 and got["owners"] == []
    assert got["created_by"] == admin.id
    created = _audit(db, "devices.create")
    assert len(created) == 1 and created[0].entity_id == str(device["id"])


def test_refusals_name_the_problem(api):
    api.device_type()
    api.tag("core")
    api.site("Dublin")
    first = api.device("sw1", switch_name="pol-1", switch_in_port=1, switch_out_port=2)

    dup = api.post("/devices", {"name": "SW1", "device_type": "router"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "already_exists"

    for body, field in [
        ({"name": "x", "device_type": "toaster"}, "device_type"),
        ({"name": "x", "device_type": "router", "tags": ["core", "nope", "gone"]}, "tags"),
        ({"name": "x", "device_type": "router", "site": "Mars"}, "site"),
        ({"name": "x", "device_type": "router", "switch_in_port": 4}, "switch_name"),
    ]:
        r = api.post("/devices", body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"]["field"] == field
    missing = api.post("/devices", {"name": "x", "device_type": "router", "tags": ["core", "nope"]})
    assert missing.json()["error"]["details"]["missing"] == ["nope"]

    # A switch port belongs to one device, whether it is that device's input or output.
    taken = api.post(
        "/devices",
        {"name": "sw2", "device_type": "router", "switch_name": "POL-1", "switch_in_port": 2},
    )
    assert taken.status_code == 409
    err = taken.json()["error"]
    assert (
        err["code"] == "port_in_use"
        and err["details"]["device"] == "sw1"
        and "sw1" in err["message"]
    )
    other_switch = api.device("sw2", switch_name="pol-2", switch_in_port=2)

    # The same checks on PATCH.
    assert api.patch(f"/devices/{other_switch['id']}", {"name": "Sw1"}).status_code == 409
    moved = api.patch(f"/devices/{other_switch['id']}", {"switch_name": "pol-1"})
    assert moved.status_code == 409 and moved.json()["error"]["details"]["device_id"] == first["id"]
    assert (
        api.patch(
            f"/devices/{first['id']}", {"switch_in_port": 2, "switch_out_port": 1}
        ).status_code
        == 200
    )
    for body in (
        {"device_type": None},
        {"status": "broken"},
        {"ssh_port": 70000},
        {"colour": "red"},
    ):
        assert api.patch(f"/devices/{first['id']}", body).status_code == 422, body
    assert (
        api.patch(f"/devices/{first['id']}", {"device_type": "toaster"}).json()["error"]["details"][
            "field"
        ]
        == "device_type"
    )
    assert api.get("/devices/999999").status_code == 404


def test_patch_writes_field_history(api, db, admin):
    api.device_type()
    api.device_type("server", category="compute")
    api.site("Dublin")
    device = api.device("r1", mgmt_address="10.0.0.1")
    updated = api.ok(
        api.patch(
            f"/devices/{device['id']}",
            {
                "mgmt_address": "10.0.0.2",
                "device_type": "server",
                "site": "Dublin",
                "notes": "moved",
                "name": "r1",
            },
        )
    )
    assert updated["device_type"]["name"] == "server" and updated["site"]["name"] == "Dublin"
    api.ok(api.patch(f"/devices/{device['id']}", {"status": "maintenance", "site": None}))

    page = api.ok(api.get(f"/devices/{device['id']}/history"))
    assert page["total"] == 6
    changes = [(h["field"], h["old_value"], h["new_value"]) for h in page["items"]]
    # Newest first; unchanged fields (name) leave no row.
    assert changes[:2] == [("site", "Dublin", None), ("status", "available", "maintenance")]
    assert changes[2:] == [
        ("notes", None, "moved"),
        ("site", None, "Dublin"),
        ("device_type", "router", "server"),
        ("mgmt_address", "10.0.0.1", "10.0.0.2"),
    ]
    assert all(
        h["changed_by"] == admin.id and h["changed_by_username"] == admin.username
        for h in page["items"]
    )
    second = api.ok(api.get(f"/devices/{device['id']}/history", params={"limit": 2, "offset": 4}))
    assert len(second["items"]) == 2 and second["total"] == 6
    assert len(_audit(db, "devices.update")) == 2


def test_delete_is_refused_while_bookings_hold_the_device(api, db, admin):
    api.device_type()
    device = api.device("r1")
    now = utcnow()
    _book(
        db,
        device["id"],
        admin.id,
        now - timedelta(days=3),
        now - timedelta(days=2),
        status="COMPLETED",
    )
    booked = _book(db, device["id"], admin.id, now + timedelta(days=1), now + timedelta(days=2))
    r = api.delete(f"/devices/{device['id']}")
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "device_booked" and f"#{booked}" in err["message"]
    assert [b["booking_id"] for b in err["details"]["bookings"]] == [booked]
    with db.scope() as s:
        s.get(Booking, booked).status = "CANCELLED"
    assert api.delete(f"/devices/{device['id']}").status_code == 204
    assert api.get(f"/devices/{device['id']}").status_code == 404
    assert len(_audit(db, "devices.delete")) == 1


def test_list_search_filters_and_sorting(api, db, make_user):
    api.device_type("router", category="infra")
    api.ok(
        api.post(
            "/device-types",
            {"name": "otdr", "category": "optical", "is_schedulable": False, "has_ports": True},
        ),
        201,
    )
    api.tag("core")
    api.tag("lab")
    api.site("Dublin")
    a = api.device(
        "alpha", hostname="alpha.lab.example", serial="SN-A", tags=["core", "lab"], site="Dublin"
    )
    b = api.device("bravo", mgmt_address="192.0.2.7", tags=["core"], status="maintenance")
    c = api.device("charlie", device_type="otdr", model="FTB-4", tags=["lab"])
    d = api.device("delta_1", notes="100% free")
    owner = make_user("member", username="olga")
    api.ok(api.post(f"/devices/{c['id']}/owners", {"username": "olga"}), 201)

    def names(**params):
        page = api.ok(api.get("/devices", params=params))
        return [item["name"] for item in page["items"]]

    assert names() == ["alpha", "bravo", "charlie", "delta_1"]
    assert names(sort="-name") == ["delta_1", "charlie", "bravo", "alpha"]
    assert names(sort="status")[-1] == "bravo"
    assert names(sort="-created_at")[0] == "delta_1"
    assert names(q="LAB.EX") == ["alpha"]
    assert names(q="192.0.2") == ["bravo"]
    assert names(q="sn-a") == ["alpha"]
    assert names(q="ftb") == ["charlie"]
    assert names(q="a_1") == ["delta_1"] and names(q="%") == []  # LIKE wildcards are literal
    assert names(device_type="OTDR") == ["charlie"]
    assert names(category="infra") == ["alpha", "bravo", "delta_1"]
    assert names(status="maintenance") == ["bravo"]
    assert names(tag="core") == ["alpha", "bravo"]
    assert names(tag=["core", "lab"]) == ["alpha"]
    assert names(site="dublin") == ["alpha"]
    assert names(owner="olga") == ["charlie"] and names(owner=str(owner.id)) == ["charlie"]
    assert names(owner="nobody") == []
    assert names(schedulable="false") == ["charlie"]
    page = api.ok(api.get("/devices", params={"limit": 2, "offset": 1}))
    assert [i["name"] for i in page["items"]] == ["bravo", "charlie"] and page["total"] == 4
    assert page["limit"] == 2 and page["offset"] == 1
    listed = {i["name"]: i for i in api.ok(api.get("/devices"))["items"]}
    assert [o["username"] for o in listed["charlie"]["owners"]] == ["olga"]
    assert {t["name"] for t in listed["alpha"]["tags"]} == {"core", "lab"}

    # free_now: no holding booking and no maintenance window covering now.
    now = utcnow()
    _book(
        db, a["id"], owner.id, now - timedelta(hours=1), now + timedelta(hours=1), status="ACTIVE"
    )
    _book(
        db,
        b["id"],
        owner.id,
        now - timedelta(hours=1),
        now + timedelta(hours=1),
        status="CANCELLED",
    )
    _book(
        db, b["id"], owner.id, now + timedelta(hours=1), now + timedelta(hours=2), status="PENDING"
    )
    with db.scope() as s:
        s.add(
            MaintenanceWindow(
                device_id=c["id"],
                start_time=now - timedelta(minutes=5),
                end_time=now + timedelta(minutes=5),
            )
        )
        s.add(
            MaintenanceWindow(
                device_id=d["id"],
                start_time=now - timedelta(minutes=5),
                end_time=now + timedelta(minutes=5),
                cancelled_at=now - timedelta(minutes=1),
            )
        )
    assert names(free_now="true") == ["bravo", "delta_1"]
    assert names(free_now="false") == ["alpha", "charlie"]
    assert names(free_now="true", tag="core") == ["bravo"]

    for bad in (
        {"sort": "serial"},
        {"status": "lost"},
        {"q": "x" * 101},
        {"limit": 501},
        {"free_now": "maybe"},
    ):
        assert api.get("/devices", params=bad).status_code == 422, bad


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


def test_device_list_costs_the_same_queries_for_10_and_200_devices(api, db, make_user):
    owner = make_user("member", username="owen")
    api.device_type("bulk", category="compute")

    def add(count, start):
        ids = insert_devices(db, count, start=start)
        with db.scope() as s:
            tags = [Tag(name=f"t{start}-{i}") for i in range(2)]
            s.add_all(tags)
            s.flush()
            for device_id in ids:
                s.add_all([DeviceTag(device_id=device_id, tag_id=t.id) for t in tags])
                s.add(DeviceOwnership(device_id=device_id, owner_id=owner.id))

    add(10, 0)
    api.ok(api.get("/devices"))  # warm up: token "last used" write, caches
    with _counting(db.engine) as few:
        page = api.ok(api.get("/devices", params={"limit": 500}))
    assert page["total"] == 10 and all(len(i["tags"]) == 2 and i["owners"] for i in page["items"])
    add(190, 10)
    with _counting(db.engine) as many:
        page = api.ok(api.get("/devices", params={"limit": 500}))
    assert page["total"] == 200 and len(page["items"]) == 200
    assert all(len(i["tags"]) == 2 and i["owners"][0]["username"] == "owen" for i in page["items"])
    assert len(many) == len(few), (few, many)
    assert len(few) <= 8, few


def test_members_and_viewers_cannot_change_devices(client, api, make_user):
    api.device_type()
    device = api.device("r1")
    api.tag("core")
    for role in ("viewer", "member", "approver"):
        user = make_user(role)
        h = user.headers
        assert client.get("/api/v1/devices", headers=h).status_code == 200
        assert client.get(f"/api/v1/devices/{device['id']}", headers=h).status_code == 200
        for method, path, body in [
            ("POST", "/devices", {"name": "r2", "device_type": "router"}),
            ("PATCH", f"/devices/{device['id']}", {"notes": "mine"}),
            ("DELETE", f"/devices/{device['id']}", None),
            ("PUT", f"/devices/{device['id']}/tags", {"tags": ["core"]}),
            ("POST", f"/devices/{device['id']}/owners", {"username": user.username}),
            ("POST", "/tags", {"name": "x"}),
            ("POST", "/device-types", {"name": "x", "category": "infra"}),
        ]:
            r = client.request(method, "/api/v1" + path, json=body, headers=h)
            assert r.status_code == 403, (role, method, path, r.status_code)
    assert api.ok(api.get(f"/devices/{device['id']}"))["notes"] is None


def test_ownership_assign_revoke_and_history(api, db, make_user, admin):
    api.device_type()
    device = api.device("r1")
    ann, bob = make_user("member", username="ann"), make_user("member", username="bob")
    base = f"/devices/{device['id']}/owners"
    first = api.ok(api.post(base, {"username": "ANN"}), 201)
    assert (
        first["owner_id"] == ann.id
        and first["assigned_by"] == admin.id
        and first["revoked_at"] is None
    )
    api.ok(api.post(base, {"username": "bob"}), 201)
    again = api.post(base, {"username": "ann"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_exists"
    unknown = api.post(base, {"username": "zed"})
    assert unknown.status_code == 422 and unknown.json()["error"]["details"]["field"] == "username"

    revoked = api.ok(api.delete(f"{base}/{ann.id}"))
    assert revoked["revoked_at"] is not None and revoked["revoked_by"] == admin.id
    assert api.delete(f"{base}/{ann.id}").status_code == 404
    current = api.ok(api.get(base))
    assert [o["username"] for o in current["items"]] == ["bob"]
    history = api.ok(api.get(base, params={"history": "true"}))
    assert history["total"] == 2 and {o["username"] for o in history["items"]} == {"ann", "bob"}
    assert [o["username"] for o in api.ok(api.get(f"/devices/{device['id']}"))["owners"]] == ["bob"]
    # Owned again later: a new row, the old one stays as history.
    api.ok(api.post(base, {"username": "ann"}), 201)
    assert api.ok(api.get(base, params={"history": "true"}))["total"] == 3
    with db.scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(DeviceHistory)) == 0
    assert (
        len(_audit(db, "devices.assign_owner")) == 3
        and len(_audit(db, "devices.revoke_owner")) == 1
    )
    assert bob.id
