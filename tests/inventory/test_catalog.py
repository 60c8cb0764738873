"""Sites, manufacturers and device types: unique names, references by name, delete guards."""

from __future__ import annotations


def test_device_types_with_manufacturer_and_counts(api):
    maker = api.ok(api.post("/manufacturers", {"name": "Polatis"}), 201)
    made = api.device_type(
        "switch-384",
        category="optical",
        manufacturer="polatis",
        platform="polatis",
        config_command="show",
    )
    assert made["manufacturer"] == "Polatis" and made["manufacturer_id"] == maker["id"]
    assert made["platform"] == "polatis" and made["device_count"] == 0
    unknown = api.post("/device-types", {"name": "x", "category": "infra", "manufacturer": "Acme"})
    assert (
        unknown.status_code == 422 and unknown.json()["error"]["details"]["field"] == "manufacturer"
    )
    assert api.post("/device-types", {"name": "x", "category": "toaster"}).status_code == 422
    assert api.post("/device-types", {"name": "x"}).status_code == 422
    dup = api.post("/device-types", {"name": "SWITCH-384", "category": "infra"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "already_exists"
    api.device_type("server", category="compute")
    api.device("s1", device_type="server")
    listed = api.ok(api.get("/device-types", params={"category": "compute"}))
    assert [(t["name"], t["device_count"]) for t in listed["items"]] == [("server", 1)]

    changed = api.ok(
        api.patch(f"/device-types/{made['id']}", {"is_schedulable": False, "manufacturer": None})
    )
    assert changed["is_schedulable"] is False and changed["manufacturer"] is None
    assert api.patch(f"/device-types/{made['id']}", {"category": None}).status_code == 422

    server = listed["items"][0]
    in_use = api.delete(f"/device-types/{server['id']}")
    assert in_use.status_code == 409 and in_use.json()["error"]["details"]["devices"] == ["s1"]
    assert api.delete(f"/device-types/{made['id']}").status_code == 204
    assert api.get(f"/device-types/{made['id']}").status_code == 404


def test_manufacturer_in_use_cannot_be_deleted(api):
    maker = api.ok(api.post("/manufacturers", {"name": "Cisco", "description": "routers"}), 201)
    assert api.post("/manufacturers", {"name": "cisco"}).status_code == 409
    api.device_type("c9300", manufacturer="Cisco")
    assert api.ok(api.get(f"/manufacturers/{maker['id']}"))["name"] == "Cisco"
    page = api.ok(api.get("/manufacturers"))
    assert page["items"][0]["device_type_count"] == 1
    r = api.delete(f"/manufacturers/{maker['id']}")
    assert r.status_code == 409 and r.json()["error"]["details"]["device_types"] == ["c9300"]
    renamed = api.ok(api.patch(f"/manufacturers/{maker['id']}", {"name": "Cisco Systems"}))
    assert renamed["name"] == "Cisco Systems"


def test_sites_crud_and_delete_guard(api):
    site = api.site("Dublin")
    assert api.post("/sites", {"name": "DUBLIN"}).status_code == 409
    api.site("Cork")
    api.device_type()
    api.device("r1", site="Cork")
    page = api.ok(api.get("/sites"))
    assert [(s["name"], s["device_count"]) for s in page["items"]] == [("Cork", 1), ("Dublin", 0)]
    changed = api.ok(
        api.patch(f"/sites/{site['id']}", {"address": "1 Main St", "description": "HQ"})
    )
    assert changed["address"] == "1 Main St"
    cork = page["items"][0]
    assert api.patch(f"/sites/{cork['id']}", {"name": "dublin"}).status_code == 409
    r = api.delete(f"/sites/{cork['id']}")
    assert r.status_code == 409 and r.json()["error"]["details"]["devices"] == ["r1"]
    assert api.delete(f"/sites/{site['id']}").status_code == 204
    assert api.get(f"/sites/{site['id']}").status_code == 404
