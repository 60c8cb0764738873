def test_me(client, admin):
    r = client.get("/api/v1/auth/me", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["username"] == "root-admin"
    assert r.json()["role"] == "admin"
