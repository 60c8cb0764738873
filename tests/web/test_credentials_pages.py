"""The credential pages: list, create, change, delete; secrets never come back in any page."""

from __future__ import annotations

from sqlalchemy import select

from labkeeper.backups.models import Credential
from labkeeper.core import security
from labkeeper.inventory.models import Tag
from tests.backups.conftest import add_credential
from tests.web.conftest import HTML, counting, sign_in

PASSWORD = "Sup3r-Secret-Pa55"
ENABLE = "En4ble-Secret-77"
NEW_PASSWORD = "An0ther-Secret-99"
SECRETS = (PASSWORD, ENABLE, NEW_PASSWORD)


def _admin(client, make_user) -> str:
    make_user("admin", username="cora", password="cred-pages-pass-1")
    return sign_in(client, "cora", "cred-pages-pass-1")


def _tags(db, *names: str) -> None:
    with db.scope() as s:
        for name in names:
            s.add(Tag(name=name))


def _no_secret(*bodies: str) -> None:
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body


def test_create_change_and_delete_without_ever_showing_a_secret(client, make_user, db):
    _tags(db, "lab", "core")
    csrf = _admin(client, make_user)
    seen: list[str] = []
    empty = client.get("/credentials", headers=HTML)
    assert empty.status_code == 200 and "No credentials yet" in empty.text

    bad = client.post(
        "/credentials",
        data={
            "csrf_token": csrf,
            "name": "lab-admin",
            "username": "admin",
            "password": PASSWORD,
            "enable_secret": ENABLE,
            "tags": "lab:ten",
        },
        headers=HTML,
    )
    seen.append(bad.text)
    assert bad.status_code == 422 and "must be a whole number" in bad.text
    assert 'value="lab-admin"' in bad.text  # plain fields stay filled in, secrets do not
    unknown = client.post(
        "/credentials",
        data={
            "csrf_token": csrf,
            "name": "x",
            "username": "u",
            "password": PASSWORD,
            "tags": "nope",
        },
        headers=HTML,
    )
    seen.append(unknown.text)
    assert unknown.status_code == 422 and "Unknown tag(s): nope" in unknown.text
    missing = client.post(
        "/credentials", data={"csrf_token": csrf, "name": "x", "username": "u"}, headers=HTML
    )
    assert missing.status_code == 422 and "Enter the password the devices accept" in missing.text

    ok = client.post(
        "/credentials",
        data={
            "csrf_token": csrf,
            "name": "lab-admin",
            "username": "admin",
            "password": PASSWORD,
            "enable_secret": ENABLE,
            "tags": "lab:10, core",
        },
        headers=HTML,
    )
    seen.append(ok.text)
    assert ok.status_code == 200 and "is stored" in ok.text
    assert "lab · 10" in ok.text and "core · 100" in ok.text
    assert "password, enable secret" in ok.text
    with db.scope(write=False) as s:
        row = s.scalar(select(Credential).where(Credential.name == "lab-admin"))
        assert row is not None
        cred_id, stored = row.id, row.password_enc
        assert security.decrypt(stored) == PASSWORD

    detail = client.get(f"/credentials/{cred_id}", headers=HTML)
    seen.append(detail.text)
    assert detail.status_code == 200 and 'value="lab:10, core:100"' in detail.text

    # Empty password: kept. Enable secret cleared, tags replaced.
    keep = client.post(
        f"/credentials/{cred_id}",
        data={
            "csrf_token": csrf,
            "name": "lab-admin",
            "username": "netops",
            "password": "",
            "tags": "core:5",
            "clear_enable_secret": "1",
        },
        headers=HTML,
    )
    seen.append(keep.text)
    assert keep.status_code == 200 and "is saved" in keep.text
    with db.scope(write=False) as s:
        row = s.get(Credential, cred_id)
        assert row is not None and row.username == "netops"
        assert row.password_enc == stored and row.enable_secret_enc is None
    changed = client.post(
        f"/credentials/{cred_id}",
        data={
            "csrf_token": csrf,
            "name": "lab-admin",
            "username": "netops",
            "password": NEW_PASSWORD,
            "tags": "core:5",
        },
        headers=HTML,
    )
    seen.append(changed.text)
    with db.scope(write=False) as s:
        row = s.get(Credential, cred_id)
        assert row is not None and security.decrypt(row.password_enc or "") == NEW_PASSWORD
    bad_edit = client.post(
        f"/credentials/{cred_id}",
        data={"csrf_token": csrf, "name": "", "username": "x y", "password": NEW_PASSWORD},
        headers=HTML,
    )
    seen.append(bad_edit.text)
    assert bad_edit.status_code == 422
    seen.append(client.get("/credentials", headers=HTML).text)
    seen.append(client.get("/admin/audit", headers=HTML).text)
    seen.append(client.get(f"/api/v1/credentials/{cred_id}", headers=HTML).text)
    _no_secret(*seen)

    gone = client.post(f"/credentials/{cred_id}/delete", data={"csrf_token": csrf}, headers=HTML)
    assert gone.status_code == 200 and "is deleted" in gone.text
    assert client.get(f"/credentials/{cred_id}", headers=HTML).status_code == 404


def test_filters_and_counters(client, make_user, db):
    add_credential(db, "alpha-login", tags={"lab": 10})
    add_credential(db, "beta-login", username="beta", tags={"core": 20})
    with db.scope() as s:
        row = s.scalar(select(Credential).where(Credential.name == "alpha-login"))
        assert row is not None
        row.success_count, row.failure_count = 3, 1
    _admin(client, make_user)
    page = client.get("/credentials", headers=HTML).text
    assert "alpha-login" in page and "beta-login" in page and "75% worked" in page
    by_tag = client.get("/credentials?tag=core", headers=HTML).text
    assert "beta-login" in by_tag and "alpha-login" not in by_tag
    by_text = client.get("/credentials?q=alp", headers=HTML).text
    assert "alpha-login" in by_text and "beta-login" not in by_text
    assert "No credential matches" in client.get("/credentials?q=zzz", headers=HTML).text


def test_only_admins_see_or_change_credentials(client, make_user, db):
    cred = add_credential(db, "hidden")
    make_user("approver", username="apu", password="cred-pages-pass-1")
    csrf = sign_in(client, "apu", "cred-pages-pass-1")
    for url in ("/credentials", f"/credentials/{cred}"):
        assert client.get(url, headers=HTML).status_code == 403
    for url in ("/credentials", f"/credentials/{cred}", f"/credentials/{cred}/delete"):
        assert client.post(url, data={"csrf_token": csrf}, headers=HTML).status_code == 403


def test_bad_input_gets_4xx_pages(client, make_user):
    _admin(client, make_user)
    for url in ("/credentials/abc", "/credentials/999999", "/credentials?q=" + "x" * 500):
        r = client.get(url, headers=HTML)
        assert 400 <= r.status_code < 500, url


def test_query_count_does_not_grow_with_the_credentials(client, make_user, db):
    _admin(client, make_user)

    def queries() -> int:
        with counting(db) as seen:
            assert client.get("/credentials", headers=HTML).status_code == 200
        return len(seen)

    add_credential(db, "c0", tags={"lab": 1})
    few = queries()
    for i in range(1, 15):
        add_credential(db, f"c{i}", tags={"lab": i, f"t{i}": 5})
    assert queries() == few
