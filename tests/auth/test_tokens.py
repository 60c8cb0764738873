"""API tokens: shown once, hashed at rest, scoped, expiring, revocable."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from labkeeper.auth.models import ApiToken
from labkeeper.core.time import utcnow


def test_token_is_shown_once_and_stored_hashed(client, make_user, db):
    amy = make_user("member", username="amy")
    r = client.post("/api/v1/auth/tokens", json={"name": "laptop"}, headers=amy.headers)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert token.startswith("lkt_")
    listed = client.get("/api/v1/auth/tokens", headers=amy.headers).json()
    assert {t["name"] for t in listed} == {"test", "laptop"}
    assert all("token" not in t for t in listed)
    with db.scope() as s:
        stored = [row.token_hash for row in s.scalars(select(ApiToken))]
    assert token not in stored
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200


def test_revoked_and_expired_tokens_stop_working(client, make_user, db):
    ben = make_user("member", username="ben")
    made = client.post("/api/v1/auth/tokens", json={"name": "ci"}, headers=ben.headers).json()
    headers = {"Authorization": f"Bearer {made['token']}"}
    assert (
        client.delete(f"/api/v1/auth/tokens/{made['id']}", headers=ben.headers).status_code == 204
    )
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    other = client.post("/api/v1/auth/tokens", json={"name": "old"}, headers=ben.headers).json()
    with db.scope() as s:
        s.get(ApiToken, other["id"]).expires_at = utcnow() - timedelta(seconds=1)
    r = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {other['token']}"})
    assert r.status_code == 401


def test_someone_elses_token_cannot_be_revoked(client, make_user):
    a, b = make_user("member"), make_user("member")
    made = client.post("/api/v1/auth/tokens", json={"name": "x"}, headers=a.headers).json()
    assert client.delete(f"/api/v1/auth/tokens/{made['id']}", headers=b.headers).status_code == 404


def test_scopes_narrow_a_token_and_cannot_widen_it(client, make_user, admin):
    narrow = client.post(
        "/api/v1/auth/tokens", json={"name": "ro", "scopes": ["logs:read"]}, headers=admin.headers
    ).json()
    h = {"Authorization": f"Bearer {narrow['token']}"}
    assert client.get("/api/v1/audit", headers=h).status_code == 200
    assert client.get("/api/v1/users", headers=h).status_code == 403
    member = make_user("member")
    r = client.post(
        "/api/v1/auth/tokens", json={"name": "x", "scopes": ["users:write"]}, headers=member.headers
    )
    assert r.status_code == 403
    bad = client.post(
        "/api/v1/auth/tokens", json={"name": "x", "scopes": ["root"]}, headers=member.headers
    )
    assert bad.status_code == 422


def test_token_lifetime_is_capped_by_settings(client, admin):
    r = client.post(
        "/api/v1/auth/tokens", json={"name": "forever", "expires_days": 5000}, headers=admin.headers
    )
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "expires_days"
