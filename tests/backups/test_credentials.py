"""The credential store: write-only secrets, tag links, candidate order, key rotation."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from labkeeper.admin.models import AuditLog
from labkeeper.backups import storage
from labkeeper.backups.models import Credential, CredentialTag
from labkeeper.cli import app as cli_app
from labkeeper.core import security
from labkeeper.inventory.models import Device
from tests.backups.conftest import add_devices

SECRETS = {
    "password": "pa55-w0rd-secret",
    "enable_secret": "en4ble-secret",
    "ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n",
}


def _tags(api, *names):
    for name in names:
        api.call("POST", "/tags", 201, json={"name": name})


def test_secrets_go_in_encrypted_and_never_come_out(db, api, make_user):
    _tags(api, "core", "edge")
    body = {
        "name": "lab-admin",
        "username": "netops",
        **SECRETS,
        "tags": [{"tag": "core", "priority": 10}, {"tag": "edge"}],
    }
    r = api.client.post("/api/v1/credentials", json=body, headers=api.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["has_password"] and created["has_enable_secret"] and created["has_ssh_key"]
    assert [(t["tag"], t["priority"]) for t in created["tags"]] == [("core", 10), ("edge", 100)]
    cred_id = created["id"]

    reader = make_user("admin")
    answers = [
        r.text,
        api.client.get(f"/api/v1/credentials/{cred_id}", headers=reader.headers).text,
        api.client.get("/api/v1/credentials", headers=reader.headers).text,
    ]
    with db.scope(write=False) as s:
        row = s.get(Credential, cred_id)
        stored = [row.password_enc, row.enable_secret_enc, row.ssh_key_enc]
        trail = [json.dumps(a.payload) for a in s.scalars(select(AuditLog))]
    for secret in SECRETS.values():
        assert not any(secret.strip() in text for text in answers + stored + trail)
    assert security.decrypt(stored[0]) == SECRETS["password"]
    assert security.decrypt(stored[2]) == SECRETS["ssh_key"]
    assert any('"given": ["password", "enable_secret", "ssh_key"]' in t for t in trail)

    # Members and viewers cannot see the store at all.
    member = make_user("member")
    assert api.client.get("/api/v1/credentials", headers=member.headers).status_code == 403

    # Change: a new password replaces the old, null clears the enable secret, tags replaced.
    changed = api.call(
        "PATCH",
        f"/credentials/{cred_id}",
        json={
            "password": "n3w-secret",
            "enable_secret": None,
            "tags": [{"tag": "edge", "priority": 5}],
        },
    )
    assert not changed["has_enable_secret"] and changed["has_password"]
    assert [(t["tag"], t["priority"]) for t in changed["tags"]] == [("edge", 5)]
    with db.scope(write=False) as s:
        row = s.get(Credential, cred_id)
        assert security.decrypt(row.password_enc) == "n3w-secret"
        assert row.enable_secret_enc is None

    api.call("DELETE", f"/credentials/{cred_id}", 204)
    api.call("GET", f"/credentials/{cred_id}", 404)
    with db.scope(write=False) as s:
        assert s.scalar(select(CredentialTag)) is None
        actions = [
            a.action
            for a in s.scalars(
                select(AuditLog).where(AuditLog.entity_type == "credential").order_by(AuditLog.id)
            )
        ]
    assert actions == ["credentials.create", "credentials.update", "credentials.delete"]


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"tags": [{"tag": "nope"}]}, 422, "tags"),
        ({"tags": [{"tag": "core"}, {"tag": "CORE"}]}, 422, "tags"),
        ({"ssh_key": "not a key"}, 422, None),
        ({"password": ""}, 422, None),
        ({"tags": [{"tag": "core", "priority": -1}]}, 422, None),
        ({"name": "taken"}, 409, "name"),
    ],
)
def test_bad_credentials_are_refused(db, api, change, status, field):
    _tags(api, "core")
    base = {"name": "new", "username": "u", "password": "p"}
    api.call("POST", "/credentials", 201, json={**base, "name": "taken"})
    error = api.call("POST", "/credentials", status, json={**base, **change})["error"]
    if field:
        assert error["details"].get("field") == field


def test_candidate_order_priority_then_success_rate_then_last_good(db, api):
    (device_id,) = add_devices(db, None, names=["r1"], ports=[22], tags=("core", "edge"))
    _ = api  # the device and tags exist; credentials through the API
    ids = {}
    for name, tags in (
        ("often-fails", [{"tag": "core", "priority": 10}]),
        ("reliable", [{"tag": "edge", "priority": 10}]),
        ("fallback", [{"tag": "core", "priority": 50}, {"tag": "edge", "priority": 20}]),
    ):
        body = {"name": name, "username": "u", "password": "p", "tags": tags}
        ids[name] = api.call("POST", "/credentials", 201, json=body)["id"]
    with db.scope() as s:
        s.execute(
            update(CredentialTag)
            .where(CredentialTag.credential_id == ids["often-fails"])
            .values(success_count=1, failure_count=9)
        )
        s.execute(
            update(CredentialTag)
            .where(CredentialTag.credential_id == ids["reliable"])
            .values(success_count=9, failure_count=1)
        )

    def order():
        return [c["name"] for c in api.call("GET", f"/devices/{device_id}/credentials")]

    # Same priority: the better success rate first; "fallback" once, through its best link.
    candidates = api.call("GET", f"/devices/{device_id}/credentials")
    assert [c["name"] for c in candidates] == ["reliable", "often-fails", "fallback"]
    assert candidates[2]["tag"] == "edge" and candidates[2]["priority"] == 20
    assert candidates[0]["success_rate"] == 0.9
    with db.scope() as s:
        s.execute(
            update(Device).where(Device.id == device_id).values(last_credential_id=ids["fallback"])
        )
    assert order() == ["fallback", "reliable", "often-fails"]
    assert api.call("GET", f"/devices/{device_id}/credentials")[0]["last_good"] is True
    api.call("GET", "/devices/999999/credentials", 404)


def test_order_candidates_without_history_keeps_priority_then_id():
    rows = [(3, 1, 100, 0, 0, 0, 0), (2, 1, 100, 0, 0, 0, 0), (1, 2, 5, 0, 0, 5, 5)]
    assert storage.order_candidates(rows, None) == [(1, 2), (2, 1), (3, 1)]
    # A last good credential that no longer matches the device's tags is not tried.
    assert storage.order_candidates(rows, 99) == [(1, 2), (2, 1), (3, 1)]
    assert storage.order_candidates(rows, 3) == [(3, 1), (1, 2), (2, 1)]


def test_keys_rotate_re_encrypts_everything_so_the_old_key_can_go(db, api, monkeypatch):
    old_key = "old-key-0123456789-0123456789-0123456789"
    new_key = "new-key-9876543210-9876543210-9876543210"
    url = db.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("LABKEEPER_DATABASE_URL", url)

    def use_keys(keys: str) -> None:
        monkeypatch.setenv("LABKEEPER_SECRET_KEYS", keys)
        from labkeeper.config import get_settings

        get_settings.cache_clear()
        security.reset_caches()

    use_keys(old_key)
    for n in range(3):
        body = {"name": f"c{n}", "username": "u", "password": f"pw-{n}", "enable_secret": f"en-{n}"}
        api.call("POST", "/credentials", 201, json=body)
    runner = CliRunner()

    def secrets() -> list[str]:
        with db.scope(write=False) as s:
            rows = list(s.scalars(select(Credential).order_by(Credential.id)))
        return [security.decrypt(t) for r in rows for t in (r.password_enc, r.enable_secret_enc)]

    use_keys(new_key)
    with pytest.raises(ValueError):
        secrets()  # the new key alone cannot read what the old one wrote

    use_keys(f"{new_key},{old_key}")  # step 1: new key first, old one still there
    result = runner.invoke(cli_app, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 6 secrets" in result.output

    use_keys(new_key)  # step 2: the old key is gone, and everything still opens
    assert secrets() == ["pw-0", "en-0", "pw-1", "en-1", "pw-2", "en-2"]
    with db.scope(write=False) as s:
        assert s.scalar(select(AuditLog).where(AuditLog.action == "credentials.rotate_keys"))

    # A secret no configured key opens: rotation refuses and changes nothing.
    use_keys(old_key)
    api.call("POST", "/credentials", 201, json={"name": "stray", "username": "u", "password": "x"})
    use_keys(new_key)
    with db.scope(write=False) as s:
        before = [r.password_enc for r in s.scalars(select(Credential).order_by(Credential.id))]
    result = runner.invoke(cli_app, ["keys", "rotate"])
    assert result.exit_code == 1 and "stray" in result.output
    with db.scope(write=False) as s:
        after = [r.password_enc for r in s.scalars(select(Credential).order_by(Credential.id))]
    assert before == after
