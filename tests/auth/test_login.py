"""Signing in and out: tokens, cookies, CSRF, lockout, legacy hashes, rate limits."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time

import bcrypt
import pytest
from sqlalchemy import select

from labkeeper.admin.models import AuditLog
from labkeeper.auth import service
from labkeeper.auth.deps import COOKIE_NAME
from labkeeper.auth.models import User, UserSession
from labkeeper.core.security import token_hash


def login(client, username, password):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def test_login_returns_token_and_sets_session_cookie(client, make_user, db):
    alice = make_user("member", username="alice")
    r = login(client, "alice", alice.password)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["access_token"].startswith("lks_")
    cookie = r.headers["set-cookie"]
    assert COOKIE_NAME in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["username"] == "alice"
    with db.scope() as s:
        row = s.scalar(
            select(UserSession).where(UserSession.token_hash == token_hash(body["access_token"]))
        )
        assert row is not None and row.user_id == alice.id  # stored hashed, found by hash
        assert s.get(User, alice.id).last_login_at is not None


def test_login_by_email_and_case_insensitive_username(client, make_user):
    bob = make_user("member", username="Bob")
    assert login(client, "bob", bob.password).status_code == 200
    assert login(client, "Bob@lab.example", bob.password).status_code == 200


def test_wrong_password_is_401_counted_and_audited(client, make_user, db):
    carol = make_user("member", username="carol")
    r = login(client, "carol", "wrong-password-1")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_credentials"
    with db.scope() as s:
        assert s.get(User, carol.id).failed_logins == 1
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "auth.login")).all()
        assert [row.outcome for row in rows] == ["failure"]
    assert login(client, "nobody-here", "whatever-123").status_code == 401


def test_lockout_after_threshold_is_423_with_unlock_time(client, make_user, admin):
    dave = make_user("member", username="dave")
    client.put(
        "/api/v1/settings/security.lockout_threshold", json={"value": 3}, headers=admin.headers
    )
    codes = [login(client, "dave", "bad-password-9").status_code for _ in range(3)]
    assert codes == [401, 401, 423]
    r = login(client, "dave", dave.password)  # even the right password is refused now
    assert r.status_code == 423
    assert r.json()["error"]["code"] == "account_locked"
    assert "locked_until" in r.json()["error"]["details"]
    unlock = client.post(f"/api/v1/users/{dave.id}/unlock", headers=admin.headers)
    assert unlock.status_code == 200
    assert login(client, "dave", dave.password).status_code == 200


def test_legacy_seed_hash_verifies_and_is_rehashed(client, make_user, db):
    erin = make_user("member", username="erin")
    legacy = bcrypt.hashpw(hashlib.sha256(b"old-secret-42").hexdigest().encode(), bcrypt.gensalt(4))
    with db.scope() as s:
        s.get(User, erin.id).password_hash = legacy.decode()
    assert login(client, "erin", "wrong-one-42").status_code == 401
    assert login(client, "erin", "old-secret-42").status_code == 200
    with db.scope() as s:
        assert s.get(User, erin.id).password_hash.startswith("$argon2id$")
    assert login(client, "erin", "old-secret-42").status_code == 200


def test_logout_ends_the_session_and_logout_all_ends_every_one(client, make_user):
    frank = make_user("member", username="frank")
    t1 = login(client, "frank", frank.password).json()["access_token"]
    t2 = login(client, "frank", frank.password).json()["access_token"]
    h1, h2 = ({"Authorization": f"Bearer {t}"} for t in (t1, t2))
    assert client.post("/api/v1/auth/logout", headers=h1).status_code == 204
    assert client.get("/api/v1/auth/me", headers=h1).status_code == 401
    assert client.get("/api/v1/auth/me", headers=h2).status_code == 200
    t3 = login(client, "frank", frank.password).json()["access_token"]
    r = client.post("/api/v1/auth/logout-all", headers={"Authorization": f"Bearer {t3}"})
    assert r.json()["sessions_ended"] == 2
    assert client.get("/api/v1/auth/me", headers=h2).status_code == 401
    # API tokens are not sign-ins: they survive "log out everywhere".
    assert client.get("/api/v1/auth/me", headers=frank.headers).status_code == 200


def test_cookie_session_needs_csrf_token_for_writes(client, make_user):
    gina = make_user("member", username="gina")
    r = login(client, "gina", gina.password)
    csrf = r.json()["csrf_token"]
    # The test client keeps the cookie; no Authorization header from here on.
    assert client.get("/api/v1/auth/me").json()["username"] == "gina"
    denied = client.patch("/api/v1/auth/me", json={"full_name": "Gina"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "csrf_failed"
    ok = client.patch("/api/v1/auth/me", json={"full_name": "Gina"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["full_name"] == "Gina"


def test_forged_cookie_is_ignored(client, make_user):
    client.cookies.set(COOKIE_NAME, "lks_forged.0000")
    assert client.get("/api/v1/auth/me").status_code == 401


def test_bad_authorization_header_is_401(client):
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer lkt_nope"})
    assert r.status_code == 401


def test_deactivated_user_cannot_sign_in(client, make_user, admin):
    hank = make_user("member", username="hank")
    assert (
        client.post(f"/api/v1/users/{hank.id}/deactivate", headers=admin.headers).status_code == 200
    )
    assert login(client, "hank", hank.password).status_code == 401
    assert client.get("/api/v1/auth/me", headers=hank.headers).status_code == 401


def test_sign_in_attempts_are_rate_limited_per_address(client, app):
    app.state.settings.login_rate_per_minute = 5
    codes = [login(client, "ivy", "whatever-123").status_code for _ in range(7)]
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429, 429]


def test_checking_a_password_holds_no_database_lock(db, make_user):
    """On SQLite a sign-in's transaction would hold the write lock from its first read; the
    (slow, on purpose) password check runs with no lock held, so other writers go on."""
    if db.backend != "sqlite":
        pytest.skip("the write lock that would be held is SQLite's")
    alice = make_user("member", username="alice")
    slow = bcrypt.hashpw(
        hashlib.sha256(alice.password.encode()).hexdigest().encode(), bcrypt.gensalt(13)
    ).decode()  # a seed system's hash: about half a second to check
    with db.scope() as s:
        s.get(User, alice.id).password_hash = slow
    signed_in: list[object] = []

    def sign_in() -> None:
        with db.scope() as s:  # a write transaction, as a POST request has
            signed_in.append(
                service.login(
                    s, username="alice", password=alice.password, ip=None, user_agent=None
                )
            )

    worker = threading.Thread(target=sign_in)
    worker.start()
    time.sleep(0.1)  # it has read the user and is checking the password by now
    other = sqlite3.connect(db.engine.url.database, timeout=0.01)
    other_wrote = False
    try:
        while worker.is_alive() and not other_wrote:
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                other_wrote = True
            except sqlite3.OperationalError:  # locked: try again
                time.sleep(0.005)
    finally:
        other.close()
        worker.join()
    assert signed_in, "the sign-in failed"
    assert other_wrote, "another writer waited for the whole password check"
