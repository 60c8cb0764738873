"""Invitations: hashed token, expiry, single use, role carried over."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from labkeeper.auth.models import Invitation
from labkeeper.core.time import utcnow


def invite(client, admin, email="guest@lab.example", role="approver"):
    r = client.post(
        "/api/v1/invitations", headers=admin.headers, json={"email": email, "role": role}
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_accepting_creates_the_user_with_the_role_once(client, admin, db):
    inv = invite(client, admin)
    assert inv["accept_url"].endswith(inv["token"])
    with db.scope() as s:
        assert inv["token"] not in [row.token_hash for row in s.scalars(select(Invitation))]
    body = {"token": inv["token"], "username": "guest", "password": "visitor-pass-1"}
    r = client.post("/api/v1/invitations/accept", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "approver" and r.json()["email"] == "guest@lab.example"
    again = client.post("/api/v1/invitations/accept", json={**body, "username": "guest2"})
    assert again.status_code == 410
    listed = client.get("/api/v1/invitations", headers=admin.headers).json()
    assert listed["items"][0]["accepted_at"] is not None


def test_expired_revoked_and_unknown_invitations(client, admin, db):
    inv = invite(client, admin, email="late@lab.example")
    with db.scope() as s:
        s.get(Invitation, inv["id"]).expires_at = utcnow() - timedelta(minutes=1)
    r = client.post(
        "/api/v1/invitations/accept",
        json={"token": inv["token"], "username": "late", "password": "tardy-pass-1"},
    )
    assert r.status_code == 410
    inv2 = invite(client, admin, email="nope@lab.example")
    assert (
        client.delete(f"/api/v1/invitations/{inv2['id']}", headers=admin.headers).status_code == 204
    )
    r = client.post(
        "/api/v1/invitations/accept",
        json={"token": inv2["token"], "username": "nope", "password": "never-pass-1"},
    )
    assert r.status_code == 410
    r = client.post(
        "/api/v1/invitations/accept",
        json={"token": "x" * 40, "username": "who", "password": "who-pass-12"},
    )
    assert r.status_code == 404


def test_invitation_rules(client, admin, make_user):
    make_user("member", username="exists")
    r = client.post(
        "/api/v1/invitations", headers=admin.headers, json={"email": "exists@lab.example"}
    )
    assert r.status_code == 409
    r = client.post(
        "/api/v1/invitations",
        headers=admin.headers,
        json={"email": "x@lab.example", "role": "superadmin"},
    )
    assert r.status_code == 403
    inv = invite(client, admin, email="weak@lab.example")
    r = client.post(
        "/api/v1/invitations/accept",
        json={"token": inv["token"], "username": "weak", "password": "short"},
    )
    assert r.status_code == 422
    # a failed accept leaves the invitation usable
    r = client.post(
        "/api/v1/invitations/accept",
        json={"token": inv["token"], "username": "weak", "password": "strong-pass-1"},
    )
    assert r.status_code == 201
