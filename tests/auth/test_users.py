"""Users: admins create, filter, change roles and deactivate; people edit themselves."""

from __future__ import annotations


def test_admin_creates_a_user_who_can_sign_in(client, admin):
    r = client.post(
        "/api/v1/users",
        headers=admin.headers,
        json={
            "username": "newbie",
            "password": "first-pass-1",
            "role": "member",
            "email": "n@lab.example",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "member" and "bookings:write" in r.json()["permissions"]
    login = client.post(
        "/api/v1/auth/login", json={"username": "newbie", "password": "first-pass-1"}
    )
    assert login.status_code == 200


def test_duplicates_are_409_with_the_field(client, admin, make_user):
    make_user("member", username="taken")
    r = client.post(
        "/api/v1/users",
        headers=admin.headers,
        json={"username": "TAKEN", "password": "first-pass-1"},
    )
    assert r.status_code == 409 and r.json()["error"]["details"]["field"] == "username"
    r = client.post(
        "/api/v1/users",
        headers=admin.headers,
        json={"username": "fresh", "password": "first-pass-1", "email": "taken@lab.example"},
    )
    assert r.status_code == 409 and r.json()["error"]["details"]["field"] == "email"


def test_bad_input_is_422_naming_the_field(client, admin):
    cases = [
        ({"username": "ok-name", "password": "short"}, "password"),
        ({"username": "ok-name", "password": "onlyletterss"}, "password"),
        ({"username": "bad name!", "password": "first-pass-1"}, "body.username"),
        ({"username": "ok-name", "password": "first-pass-1", "role": "god"}, "body.role"),
        ({"username": "ok-name", "password": "first-pass-1", "user_id": 1}, "body.user_id"),
        ({"username": "x" * 51, "password": "first-pass-1"}, "body.username"),
        (
            {"username": "ok-name", "password": "first-pass-1", "email": "not-an-email"},
            "body.email",
        ),
    ]
    for body, field in cases:
        r = client.post("/api/v1/users", headers=admin.headers, json=body)
        assert r.status_code == 422, (body, r.text)
        error = r.json()["error"]
        fields = [e["field"] for e in error["details"].get("errors", [])] or [
            error["details"].get("field")
        ]
        assert field in fields, (body, error)


def test_roles_cannot_be_granted_above_ones_own(client, admin, make_user):
    r = client.post(
        "/api/v1/users",
        headers=admin.headers,
        json={"username": "wannabe", "password": "first-pass-1", "role": "superadmin"},
    )
    assert r.status_code == 403
    boss = make_user("superadmin")
    r = client.post(
        "/api/v1/users",
        headers=boss.headers,
        json={"username": "second-boss", "password": "first-pass-1", "role": "superadmin"},
    )
    assert r.status_code == 201
    r = client.patch(f"/api/v1/users/{boss.id}", headers=admin.headers, json={"role": "viewer"})
    assert r.status_code == 403


def test_list_filters_and_paginates(client, admin, make_user):
    for i in range(5):
        make_user("member", username=f"student{i}")
    make_user("approver", username="prof")
    page = client.get("/api/v1/users?limit=2&offset=0&q=student", headers=admin.headers).json()
    assert page["total"] == 5 and len(page["items"]) == 2 and page["limit"] == 2
    approvers = client.get("/api/v1/users?role=approver", headers=admin.headers).json()
    assert [u["username"] for u in approvers["items"]] == ["prof"]
    assert client.get("/api/v1/users?limit=501", headers=admin.headers).status_code == 422


def test_role_status_overrides_and_limits(client, admin, make_user):
    ann = make_user("approver", username="ann")
    r = client.patch(
        f"/api/v1/users/{ann.id}",
        headers=admin.headers,
        json={
            "permissions": {"devices:write": True, "bookings:export": False},
            "approval_limits": {"max_hours": 8, "max_devices": 2},
        },
    )
    assert r.status_code == 200, r.text
    perms = set(r.json()["permissions"])
    assert "devices:write" in perms and "bookings:export" not in perms
    assert r.json()["approval_limits"] == {"max_hours": 8, "max_devices": 2}
    assert client.post("/api/v1/devices", headers=ann.headers, json={}).status_code != 403
    client.patch(
        f"/api/v1/users/{ann.id}", headers=admin.headers, json={"role_status": "suspended"}
    )
    r = client.get("/api/v1/users", headers=ann.headers)
    assert r.status_code == 403
    bad = client.patch(
        f"/api/v1/users/{ann.id}",
        headers=admin.headers,
        json={"permissions": {"rule:everything": True}},
    )
    assert bad.status_code == 422


def test_admin_cannot_demote_or_deactivate_themselves(client, admin):
    r = client.patch(f"/api/v1/users/{admin.id}", headers=admin.headers, json={"role": "viewer"})
    assert r.status_code == 403
    r = client.post(f"/api/v1/users/{admin.id}/deactivate", headers=admin.headers)
    assert r.status_code == 403


def test_profile_and_password_change(client, make_user):
    kim = make_user("member", username="kim")
    r = client.patch(
        "/api/v1/auth/me",
        headers=kim.headers,
        json={"email": "kim@new.example", "discord_id": "123456789012"},
    )
    assert r.status_code == 200 and r.json()["discord_id"] == "123456789012"
    assert (
        client.patch(
            "/api/v1/auth/me", headers=kim.headers, json={"discord_id": "not-a-number"}
        ).status_code
        == 422
    )
    wrong = client.post(
        "/api/v1/auth/password",
        headers=kim.headers,
        json={"current_password": "nope-nope-1", "new_password": "brand-new-pw-2"},
    )
    assert wrong.status_code == 422
    ok = client.post(
        "/api/v1/auth/password",
        headers=kim.headers,
        json={"current_password": kim.password, "new_password": "brand-new-pw-2"},
    )
    assert ok.status_code == 204
    assert (
        client.post(
            "/api/v1/auth/login", json={"username": "kim", "password": kim.password}
        ).status_code
        == 401
    )
    assert (
        client.post(
            "/api/v1/auth/login", json={"username": "kim", "password": "brand-new-pw-2"}
        ).status_code
        == 200
    )


def test_members_see_only_themselves(client, make_user):
    a, b = make_user("member"), make_user("member")
    assert client.get(f"/api/v1/users/{a.id}", headers=a.headers).status_code == 200
    assert client.get(f"/api/v1/users/{b.id}", headers=a.headers).status_code == 403
    assert client.get("/api/v1/users/2147483647", headers=a.headers).status_code in (403, 404)
