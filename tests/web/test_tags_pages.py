"""The tags page: tags with colours and counts, tag rules with a live preview before saving."""

from __future__ import annotations

import json

from sqlalchemy import select

from labkeeper.inventory.models import DeviceTag, Tag, TagRule
from tests.backups.conftest import add_devices
from tests.web.conftest import HTML, counting, sign_in


def _as(client, make_user, role: str, username: str) -> str:
    make_user(role, username=username, password="tags-pages-pass-1")
    return sign_in(client, username, "tags-pages-pass-1")


def _lab(db) -> None:
    add_devices(db, None, names=["core-1", "core-2", "edge-1"], ports=[None] * 3, tags=("lab",))


def test_tags_with_colours_and_device_counts(client, make_user, db):
    _lab(db)
    csrf = _as(client, make_user, "admin", "tia")
    page = client.get("/tags", headers=HTML)
    assert page.status_code == 200 and "lab" in page.text
    assert "<td>3</td>" in page.text
    bad = client.post("/tags", data={"csrf_token": csrf, "name": "x", "color": "red"}, headers=HTML)
    assert bad.status_code == 422
    dup = client.post("/tags", data={"csrf_token": csrf, "name": "LAB"}, headers=HTML)
    assert dup.status_code == 409 or dup.status_code == 422
    ok = client.post(
        "/tags", data={"csrf_token": csrf, "name": "core", "color": "#ff8800"}, headers=HTML
    )
    assert ok.status_code == 200 and "background: #ff8800" in ok.text
    with db.scope(write=False) as s:
        tag_id = s.scalar(select(Tag.id).where(Tag.name == "core"))
    gone = client.post(f"/tags/{tag_id}/delete", data={"csrf_token": csrf}, headers=HTML)
    assert gone.status_code == 200 and "The tag is deleted" in gone.text


def test_rule_preview_matches_before_saving_then_saving_tags_devices(client, make_user, db):
    _lab(db)
    csrf = _as(client, make_user, "admin", "tom")
    client.post("/tags", data={"csrf_token": csrf, "name": "core"}, headers=HTML)
    preview = client.get(
        "/tags/rules/preview",
        params={"op": "and", "field_0": "name", "operator_0": "startswith", "value_0": "core"},
        headers={**HTML, "HX-Request": "true"},
    )
    assert preview.status_code == 200 and "<html" not in preview.text
    assert "2 devices match" in preview.text
    assert "core-1" in preview.text and "core-2" in preview.text and "edge-1" not in preview.text
    negated = client.get(
        "/tags/rules/preview",
        params={"field_0": "name", "operator_0": "startswith", "value_0": "core", "negate_0": "1"},
        headers=HTML,
    ).text
    assert "1 device matches" in negated and "edge-1" in negated
    nested = {
        "op": "or",
        "rules": [
            {"field": "name", "operator": "equals", "value": "edge-1"},
            {"op": "and", "rules": [{"field": "name", "operator": "regex", "value": "-2$"}]},
        ],
    }
    both = client.get(
        "/tags/rules/preview", params={"rule_json": json.dumps(nested)}, headers=HTML
    ).text
    assert "2 devices match" in both and "core-1" not in both
    bad = client.get(
        "/tags/rules/preview",
        params={"field_0": "name", "operator_0": "regex", "value_0": "("},
        headers=HTML,
    )
    assert bad.status_code == 422 and "not a valid regular expression" in bad.text
    bad_htmx = client.get(
        "/tags/rules/preview", params={"rule_json": "{nope"}, headers={**HTML, "HX-Request": "true"}
    )
    assert bad_htmx.status_code == 200 and "not valid JSON" in bad_htmx.text
    with db.scope(write=False) as s:
        assert s.scalar(select(TagRule.id)) is None  # previews change nothing

    saved = client.post(
        "/tags/rules",
        data={
            "csrf_token": csrf,
            "name": "core boxes",
            "tag": "core",
            "op": "and",
            "field_0": "name",
            "operator_0": "startswith",
            "value_0": "core",
            "is_active": "1",
        },
        headers=HTML,
    )
    assert saved.status_code == 200 and "2 devices tagged" in saved.text
    assert "name starts with “core”" in saved.text
    with db.scope(write=False) as s:
        core = s.scalar(select(Tag.id).where(Tag.name == "core"))
        tagged = s.scalars(select(DeviceTag.device_id).where(DeviceTag.tag_id == core)).all()
        assert len(tagged) == 2
        rule_id = s.scalar(select(TagRule.id))
    nothing = client.post(
        "/tags/rules", data={"csrf_token": csrf, "name": "r", "tag": "core"}, headers=HTML
    )
    assert nothing.status_code == 422 and "at least one condition" in nothing.text
    gone = client.post(f"/tags/rules/{rule_id}/delete", data={"csrf_token": csrf}, headers=HTML)
    assert gone.status_code == 200 and "2 devices lost the tag" in gone.text


def test_members_see_tags_but_cannot_change_them(client, make_user, db):
    _lab(db)
    csrf = _as(client, make_user, "member", "meg")
    page = client.get("/tags", headers=HTML)
    assert (
        page.status_code == 200 and "Add a tag" not in page.text and "Add a rule" not in page.text
    )
    assert (
        client.get(
            "/tags/rules/preview?field_0=name&operator_0=contains&value_0=x", headers=HTML
        ).status_code
        == 200
    )
    assert ">Edit<" not in page.text and "Turn off" not in page.text
    for url in (
        "/tags",
        "/tags/rules",
        "/tags/1/delete",
        "/tags/rules/1/delete",
        "/tags/1",
        "/tags/rules/1",
        "/tags/rules/1/active",
    ):
        assert (
            client.post(url, data={"csrf_token": csrf, "name": "x"}, headers=HTML).status_code
            == 403
        )


def test_query_count_does_not_grow_with_the_tags(client, make_user, db):
    _as(client, make_user, "admin", "tod")

    def queries() -> int:
        with counting(db) as seen:
            assert client.get("/tags", headers=HTML).status_code == 200
        return len(seen)

    add_devices(db, None, names=["a"], ports=[None], tags=("t0",))
    few = queries()
    add_devices(
        db, None, names=["b", "c"], ports=[None] * 2, tags=tuple(f"t{i}" for i in range(15))
    )
    assert queries() == few


def _tag(db, name: str) -> Tag:
    with db.scope(write=False) as s:
        return s.scalar(select(Tag).where(Tag.name == name))


def test_a_tag_is_edited_in_place(client, make_user, db):
    _lab(db)
    csrf = _as(client, make_user, "admin", "tess")
    lab = _tag(db, "lab")
    page = client.get("/tags", headers=HTML).text
    assert f'action="/tags/{lab.id}"' in page and 'aria-label="Edit the tag lab"' in page
    r = client.post(
        f"/tags/{lab.id}",
        data={
            "csrf_token": csrf,
            "name": "bench",
            "color": "#00aa55",
            "description": "on the bench",
        },
        headers=HTML,
    )
    assert r.status_code == 200 and "The tag “bench” is saved" in r.text
    assert "background: #00aa55" in r.text and "on the bench" in r.text
    renamed = _tag(db, "bench")
    assert renamed.id == lab.id and renamed.color == "#00aa55"
    with db.scope(write=False) as s:  # the devices keep it under its new name
        assert len(s.scalars(select(DeviceTag).where(DeviceTag.tag_id == lab.id)).all()) == 3
    client.post("/tags", data={"csrf_token": csrf, "name": "core"}, headers=HTML)
    # a taken name, a bad colour, no name: 4xx with the row's form open and the values kept
    taken = client.post(
        f"/tags/{lab.id}", data={"csrf_token": csrf, "name": "CORE", "color": ""}, headers=HTML
    )
    assert taken.status_code == 409 and "already" in taken.text
    assert 'value="CORE"' in taken.text and '<details class="edit-panel" open>' in taken.text
    bad = client.post(
        f"/tags/{lab.id}", data={"csrf_token": csrf, "name": "bench", "color": "red"}, headers=HTML
    )
    assert bad.status_code == 422
    empty = client.post(f"/tags/{lab.id}", data={"csrf_token": csrf, "name": ""}, headers=HTML)
    assert empty.status_code == 422
    assert _tag(db, "bench").color == "#00aa55"  # nothing changed
    missing = client.post("/tags/999999", data={"csrf_token": csrf, "name": "x"}, headers=HTML)
    assert missing.status_code == 404
    assert client.post("/tags/abc", data={"csrf_token": csrf}, headers=HTML).status_code == 422


def _rule_form(csrf: str, **extra: str) -> dict[str, str]:
    return {
        "csrf_token": csrf,
        "name": "core boxes",
        "tag": "core",
        "op": "and",
        "field_0": "name",
        "operator_0": "startswith",
        "value_0": "core",
        "is_active": "1",
        **extra,
    }


def _tagged(db, name: str) -> int:
    with db.scope(write=False) as s:
        tag_id = s.scalar(select(Tag.id).where(Tag.name == name))
        return len(s.scalars(select(DeviceTag).where(DeviceTag.tag_id == tag_id)).all())


def test_a_rule_is_switched_off_and_on_and_edited(client, make_user, db):
    _lab(db)
    csrf = _as(client, make_user, "admin", "tim")
    client.post("/tags", data={"csrf_token": csrf, "name": "core"}, headers=HTML)
    assert client.post("/tags/rules", data=_rule_form(csrf), headers=HTML).status_code == 200
    with db.scope(write=False) as s:
        rule_id = s.scalar(select(TagRule.id))
    assert _tagged(db, "core") == 2

    off = client.post(f"/tags/rules/{rule_id}/active", data={"csrf_token": csrf}, headers=HTML)
    assert off.status_code == 200 and "is off" in off.text and "2 untagged" in off.text
    assert _tagged(db, "core") == 0 and "inactive" in off.text and "Turn on" in off.text
    on = client.post(
        f"/tags/rules/{rule_id}/active", data={"csrf_token": csrf, "is_active": "1"}, headers=HTML
    )
    assert on.status_code == 200 and "is on" in on.text and _tagged(db, "core") == 2

    # the form holds the saved rule, and the preview runs on it
    form = client.get(f"/tags?edit_rule={rule_id}", headers=HTML)
    assert form.status_code == 200
    assert f'action="/tags/rules/{rule_id}"' in form.text and "Edit the rule" in form.text
    assert (
        'value="core boxes"' in form.text
        and 'id="rule-value_0" name="value_0" type="text" value="core"' in form.text
    )
    assert 'hx-get="/tags/rules/preview"' in form.text or "Preview matching devices" in form.text
    saved = client.post(
        f"/tags/rules/{rule_id}",
        data=_rule_form(csrf, name="edge boxes", value_0="edge"),
        headers=HTML,
    )
    assert saved.status_code == 200, saved.text
    assert "The rule “edge boxes” is saved: 1 devices tagged, 2 untagged" in saved.text
    with db.scope(write=False) as s:
        rules = s.scalars(select(TagRule)).all()
    assert [(r.id, r.name) for r in rules] == [(rule_id, "edge boxes")]  # changed, not replaced
    assert _tagged(db, "core") == 1

    # a nested rule comes back as JSON
    nested = {
        "op": "or",
        "rules": [
            {"field": "name", "operator": "equals", "value": "edge-1"},
            {"op": "and", "rules": [{"field": "name", "operator": "regex", "value": "-2$"}]},
        ],
    }
    r = client.post(
        f"/tags/rules/{rule_id}",
        data=_rule_form(csrf, name="nested", rule_json=json.dumps(nested), is_active=""),
        headers=HTML,
    )
    assert r.status_code == 200 and _tagged(db, "core") == 0  # saved inactive
    form = client.get(f"/tags?edit_rule={rule_id}", headers=HTML).text
    assert "regex" in form and "edge-1" in form and 'name="is_active" value="1" checked' not in form

    # bad input: 4xx with the form kept, nothing changed
    for data, status in (
        (_rule_form(csrf, value_0="(", operator_0="regex"), 422),
        (_rule_form(csrf, tag="no-such-tag"), 422),
        (_rule_form(csrf, rule_json="{nope"), 422),
        (_rule_form(csrf, name=""), 422),
        ({"csrf_token": csrf, "name": "x", "tag": "core"}, 422),
    ):
        r = client.post(f"/tags/rules/{rule_id}", data=data, headers=HTML)
        assert 400 <= r.status_code < 500 and r.status_code == status, (data, r.status_code)
        assert f'action="/tags/rules/{rule_id}"' in r.text
    with db.scope(write=False) as s:
        assert s.scalar(select(TagRule.name)) == "nested"  # no bad post changed it
    for url in ("/tags/rules/999999", "/tags/rules/999999/active"):
        assert client.post(url, data=_rule_form(csrf), headers=HTML).status_code == 404
    for query in ("edit_rule=999999", "edit_rule=0", "edit_rule=abc"):
        assert 400 <= client.get(f"/tags?{query}", headers=HTML).status_code < 500
