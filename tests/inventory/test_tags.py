"""Tags, device tags, and tag rules applied automatically (manual tags are never touched)."""

from __future__ import annotations

from sqlalchemy import func, select

from labkeeper.admin.models import AuditLog
from labkeeper.backups.models import Credential, CredentialTag
from labkeeper.inventory.models import DeviceTag, Tag

IN_LAB = {"field": "mgmt_address", "operator": "in_subnet", "value": "10.1.0.0/16"}


def _audit_count(db, prefix):
    with db.scope(write=False) as s:
        return s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action.startswith(prefix))
        )


def test_tag_crud_with_device_counts(api, db):
    api.device_type()
    made = api.tag("core", color="#00FF7f", description="backbone")
    assert made["color"] == "#00FF7f" and made["device_count"] == 0
    assert api.post("/tags", {"name": "CORE"}).json()["error"]["code"] == "already_exists"
    for body in (
        {"name": "x", "color": "green"},
        {"name": "x", "color": "#12345"},
        {"name": ""},
        {"name": "x" * 51},
    ):
        assert api.post("/tags", body).status_code == 422, body
    api.tag("edge")
    api.device("r1", tags=["core"])
    api.device("r2", tags=["core", "edge"])
    page = api.ok(api.get("/tags"))
    assert {t["name"]: t["device_count"] for t in page["items"]} == {"core": 2, "edge": 1}
    assert [t["name"] for t in api.ok(api.get("/tags", params={"q": "dg"}))["items"]] == ["edge"]

    renamed = api.ok(api.patch(f"/tags/{made['id']}", {"name": "backbone", "color": None}))
    assert (
        renamed["name"] == "backbone" and renamed["color"] is None and renamed["device_count"] == 2
    )
    edge_id = next(t["id"] for t in page["items"] if t["name"] == "edge")
    assert api.patch(f"/tags/{edge_id}", {"name": "Backbone"}).status_code == 409
    assert api.delete(f"/tags/{made['id']}").status_code == 204
    listed = api.ok(api.get("/devices"))["items"]
    assert {d["name"]: [t["name"] for t in d["tags"]] for d in listed} == {"r1": [], "r2": ["edge"]}
    assert _audit_count(db, "tags.") == 4


def test_tag_used_by_credentials_needs_force_to_delete(api, db):
    tag = api.tag("juniper")
    with db.scope() as s:
        cred = Credential(name="lab-admin", username="admin")
        s.add(cred)
        s.flush()
        s.add(CredentialTag(credential_id=cred.id, tag_id=tag["id"]))
    r = api.delete(f"/tags/{tag['id']}")
    assert r.status_code == 409 and r.json()["error"]["details"]["credentials"] == ["lab-admin"]
    assert api.delete(f"/tags/{tag['id']}", params={"force": "true"}).status_code == 204
    with db.scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(CredentialTag)) == 0


def test_device_tags_put_add_remove_and_history(api):
    api.device_type()
    for name in ("a", "b", "c"):
        api.tag(name)
    device = api.device("r1", tags=["a"])
    base = f"/devices/{device['id']}/tags"
    assert {t["name"] for t in api.ok(api.put(base, {"tags": ["b", "C"]}))["tags"]} == {"b", "c"}
    assert api.put(base, {"tags": ["b", "zzz"]}).json()["error"]["details"]["field"] == "tags"
    assert api.tags_of(device["id"]) == {"b": "manual", "c": "manual"}
    added = api.ok(api.post(base, {"tag": "a"}))
    assert {t["name"] for t in added["tags"]} == {"a", "b", "c"}
    c_id = next(t["id"] for t in added["tags"] if t["name"] == "c")
    assert {t["name"] for t in api.ok(api.delete(f"{base}/{c_id}"))["tags"]} == {"a", "b"}
    assert api.delete(f"{base}/{c_id}").status_code == 404
    assert api.post(base, {"tag": "nope"}).json()["error"]["details"]["field"] == "tag"
    history = api.ok(api.get(f"/devices/{device['id']}/history"))["items"]
    assert [(h["old_value"], h["new_value"]) for h in history if h["field"] == "tags"] == [
        ("a, b, c", "a, b"),
        ("b, c", "a, b, c"),
        ("a", "b, c"),
    ]


def test_rules_tag_devices_on_create_update_and_rule_changes(api, db):
    api.device_type()
    api.device_type("server", category="compute")
    lab = api.tag("lab")
    api.tag("servers")
    inside = api.device("in-lab", mgmt_address="10.1.4.4")
    outside = api.device("outside", mgmt_address="192.0.2.1")
    by_hand = api.device("by-hand", mgmt_address="192.0.2.2", tags=["lab"])

    rule = api.rule("lab", IN_LAB, name="lab subnet")
    assert rule["tag"] == "lab" and rule["tagged"] == 1 and rule["untagged"] == 0
    assert api.tags_of(inside["id"]) == {"lab": "rule"}
    assert api.tags_of(outside["id"]) == {}
    assert api.tags_of(by_hand["id"]) == {"lab": "manual"}

    # Devices created or changed later are tagged (and untagged) at once.
    new = api.device("new", mgmt_address="10.1.9.9")
    assert {t["name"]: t["source"] for t in new["tags"]} == {"lab": "rule"}
    moved = api.ok(api.patch(f"/devices/{outside['id']}", {"mgmt_address": "10.1.0.7"}))
    assert {t["name"] for t in moved["tags"]} == {"lab"}
    left = api.ok(api.patch(f"/devices/{inside['id']}", {"mgmt_address": "172.16.0.1"}))
    assert left["tags"] == []
    # A rule never removes a manual tag, and a rule-given tag cannot be removed by hand.
    api.ok(api.patch(f"/devices/{by_hand['id']}", {"notes": "still mine"}))
    assert api.tags_of(by_hand["id"]) == {"lab": "manual"}
    refused = api.delete(f"/devices/{new['id']}/tags/{lab['id']}")
    assert (
        refused.status_code == 409
        and refused.json()["error"]["details"]["rules"][0]["name"] == "lab subnet"
    )
    assert api.tags_of(new["id"]) == {"lab": "rule"}

    # Changing a rule re-applies it: narrower subnet, then another tag, then deactivated.
    narrowed = api.ok(
        api.patch(f"/tag-rules/{rule['id']}", {"rule": {**IN_LAB, "value": "10.1.9.0/24"}})
    )
    assert (narrowed["tagged"], narrowed["untagged"]) == (0, 1)
    assert api.tags_of(outside["id"]) == {} and api.tags_of(new["id"]) == {"lab": "rule"}
    retagged = api.ok(api.patch(f"/tag-rules/{rule['id']}", {"tag": "servers"}))
    assert retagged["tag"] == "servers" and api.tags_of(new["id"]) == {"servers": "rule"}
    api.ok(api.patch(f"/tag-rules/{rule['id']}", {"is_active": False}))
    assert api.tags_of(new["id"]) == {}
    api.ok(api.patch(f"/tag-rules/{rule['id']}", {"is_active": True}))
    assert api.tags_of(new["id"]) == {"servers": "rule"}

    # Deleting the rule removes only what rules gave; a manual tag on the same tag stays.
    api.ok(api.post(f"/devices/{by_hand['id']}/tags", {"tag": "servers"}))
    api.ok(api.patch(f"/devices/{by_hand['id']}", {"mgmt_address": "10.1.9.1"}))
    assert api.tags_of(by_hand["id"]) == {"lab": "manual", "servers": "manual"}
    assert api.delete(f"/tag-rules/{rule['id']}").status_code == 204
    assert api.tags_of(new["id"]) == {}
    assert api.tags_of(by_hand["id"]) == {"lab": "manual", "servers": "manual"}
    assert api.get(f"/tag-rules/{rule['id']}").status_code == 404
    # One audit row per API change of rules.
    assert _audit_count(db, "tag_rules.") == 6  # create, four changes, delete


def test_rule_trees_on_type_site_status_and_renames(api):
    api.device_type()
    api.device_type("server", category="compute")
    api.site("Dublin")
    api.tag("dublin-servers")
    api.tag("not-retired")
    s1 = api.device("s1", device_type="server", site="Dublin", platform="linux")
    s2 = api.device("s2", device_type="server", platform="linux")
    r1 = api.device("r1", site="Dublin", status="retired")
    api.rule(
        "dublin-servers",
        {
            "op": "and",
            "rules": [
                {"field": "device_type", "operator": "equals", "value": "SERVER"},
                {
                    "op": "or",
                    "rules": [
                        {"field": "site", "operator": "equals", "value": "dublin"},
                        {"field": "name", "operator": "regex", "value": "^s2$"},
                    ],
                },
            ],
        },
    )
    api.rule(
        "not-retired", {"field": "status", "operator": "equals", "value": "retired", "negate": True}
    )
    assert api.tags_of(s1["id"]) == {"dublin-servers": "rule", "not-retired": "rule"}
    assert api.tags_of(s2["id"]) == {"dublin-servers": "rule", "not-retired": "rule"}
    assert api.tags_of(r1["id"]) == {}
    api.ok(api.patch(f"/devices/{r1['id']}", {"status": "available"}))
    assert api.tags_of(r1["id"]) == {"not-retired": "rule"}
    # Renaming the type changes what the devices' "device_type" field holds.
    server_type = api.ok(api.get("/device-types", params={"q": "server"}))["items"][0]
    api.ok(api.patch(f"/device-types/{server_type['id']}", {"name": "compute-node"}))
    assert "dublin-servers" not in api.tags_of(s1["id"]) and "dublin-servers" not in api.tags_of(
        s2["id"]
    )
    api.ok(api.patch(f"/device-types/{server_type['id']}", {"name": "server"}))
    assert "dublin-servers" in api.tags_of(s1["id"])


def test_rule_validation_names_the_path(api):
    api.tag("lab")
    bad = api.post(
        "/tag-rules",
        {
            "tag": "lab",
            "name": "bad",
            "rule": {
                "op": "and",
                "rules": [IN_LAB, {"field": "model", "operator": "regex", "value": "(x"}],
            },
        },
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["field"] == "rule.rules.1.value"
    subnet = api.post(
        "/tag-rules", {"tag": "lab", "name": "bad", "rule": {**IN_LAB, "value": "10.1.0.0/99"}}
    )
    assert subnet.json()["error"]["details"]["field"] == "rule.value"
    field = api.post(
        "/tag-rules/preview", {"rule": {"field": "colour", "operator": "equals", "value": "x"}}
    )
    assert field.status_code == 422 and field.json()["error"]["details"]["field"] == "rule.field"
    unknown_tag = api.post("/tag-rules", {"tag": "nope", "name": "r", "rule": IN_LAB})
    assert (
        unknown_tag.status_code == 422 and unknown_tag.json()["error"]["details"]["field"] == "tag"
    )
    assert api.ok(api.get("/tag-rules"))["total"] == 0


def test_preview_lists_matches_and_changes_nothing(api, db):
    api.device_type()
    api.tag("lab")
    for i in range(3):
        api.device(f"in{i}", mgmt_address=f"10.1.0.{i + 1}")
    api.device("out", mgmt_address="192.0.2.1")
    with db.scope(write=False) as s:
        before = s.scalar(select(func.count()).select_from(DeviceTag))
    page = api.ok(api.post("/tag-rules/preview", {"rule": IN_LAB}, params={"limit": 2}))
    assert page["total"] == 3 and [d["name"] for d in page["items"]] == ["in0", "in1"]
    assert (
        page["items"][0]["device_type"] == "router"
        and page["items"][0]["mgmt_address"] == "10.1.0.1"
    )
    with db.scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(DeviceTag)) == before
        assert s.scalar(select(func.count()).select_from(Tag)) == 1
    assert _audit_count(db, "tag_rules.") == 0
    rules_page = api.ok(api.get("/tag-rules"))
    assert rules_page["total"] == 0
