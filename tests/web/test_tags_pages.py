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
    for url in ("/tags", "/tags/rules", "/tags/1/delete", "/tags/rules/1/delete"):
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
