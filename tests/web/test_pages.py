"""The pages through the test client: sign-in, redirects, CSRF, admin forms, settings, audit."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from labkeeper.admin import service as settings_service
from labkeeper.admin.models import AuditLog
from labkeeper.auth.deps import COOKIE_NAME
from labkeeper.auth.models import ApiToken, Invitation, User
from labkeeper.core.audit import SYSTEM
from labkeeper.web.render import FORM_COOKIE
from tests.web.conftest import HTML, counting, sign_in

PAGES = ["/", "/profile", "/admin/users", "/admin/invitations", "/admin/audit", "/admin/settings"]


def actions(db, prefix: str = "") -> list[str]:
    with db.scope() as s:
        rows = s.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    return [a for a in rows if a.startswith(prefix)]


def test_signed_out_browsers_are_sent_to_sign_in_and_api_clients_get_401(client):
    for path in PAGES:
        r = client.get(path + "?x=1", headers=HTML, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"] == f"/login?next={path}%3Fx%3D1"
        assert client.get(path).status_code == 401  # no Accept: text/html -> the API's JSON
    assert client.get("/login", headers=HTML).status_code == 200
    page = client.get("/nothing-here", headers=HTML)
    assert page.status_code == 404 and "There is nothing here" in page.text


def test_sign_in_errors_then_lands_on_the_page_asked_for(client, make_user, db):
    alice = make_user("member", username="alice")
    form = client.get("/login?next=/profile", headers=HTML)
    assert 'name="next" value="/profile"' in form.text
    token = client.cookies.get(FORM_COOKIE)
    no_token = client.post(
        "/login", data={"username": "alice", "password": alice.password}, headers=HTML
    )
    assert no_token.status_code == 403 and "form has expired" in no_token.text
    wrong = client.post(
        "/login",
        data={"username": "alice", "password": "not-it-42", "csrf_token": token},
        headers=HTML,
    )
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    assert 'value="alice"' in wrong.text  # the username stays filled in
    empty = client.post("/login", data={"csrf_token": token}, headers=HTML)
    assert empty.status_code == 422 and "Enter your password" in empty.text
    ok = client.post(
        "/login",
        data={
            "username": "alice",
            "password": alice.password,
            "csrf_token": token,
            "next": "/profile",
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/profile"
    cookie = ok.headers["set-cookie"]
    assert COOKIE_NAME in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert client.get("/", headers=HTML).status_code == 200
    # Signed in already: the form sends people on.
    assert client.get("/login", headers=HTML, follow_redirects=False).status_code == 303
    assert actions(db, "auth.login") == ["auth.login", "auth.login"]  # one failure, one success
    with db.scope() as s:
        outcomes = s.scalars(
            select(AuditLog.outcome).where(AuditLog.action == "auth.login").order_by(AuditLog.id)
        )
        assert list(outcomes) == ["failure", "success"]


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil"])
def test_next_never_leaves_the_site(client, make_user, target, database):
    if database.backend != "sqlite":
        pytest.skip("pure logic: once is enough")
    bob = make_user("member", username="bob")
    client.get("/login", headers=HTML)
    r = client.post(
        "/login",
        data={
            "username": "bob",
            "password": bob.password,
            "csrf_token": client.cookies.get(FORM_COOKIE),
            "next": target,
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"


def test_form_posts_need_the_session_csrf_token(client, make_user, db):
    carol = make_user("member", username="carol")
    csrf = sign_in(client, "carol", carol.password)
    refused = client.post("/profile", data={"full_name": "Carol C"}, headers=HTML)
    assert refused.status_code == 403 and "This form has expired" in refused.text
    forged = client.post(
        "/profile", data={"full_name": "Carol C", "csrf_token": "x" * 32}, headers=HTML
    )
    assert forged.status_code == 403
    with db.scope() as s:
        assert s.get(User, carol.id).full_name is None
    saved = client.post(
        "/profile",
        data={"full_name": "Carol C", "email": "carol@lab.example", "csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert "Your profile is saved" in client.get("/profile", headers=HTML).text
    with db.scope() as s:
        assert s.get(User, carol.id).full_name == "Carol C"
    assert actions(db, "users.update_profile") == ["users.update_profile"]


def test_roles_see_only_their_pages(client, make_user):
    viewer = make_user("viewer", username="vera")
    sign_in(client, "vera", viewer.password)
    home = client.get("/", headers=HTML)
    assert home.status_code == 200 and 'href="/admin' not in home.text
    for path in PAGES[2:]:
        denied = client.get(path, headers=HTML)
        assert denied.status_code == 403 and "You do not have access" in denied.text, path
    # An approver reads users and the audit log but changes neither users nor settings.
    approver = make_user("approver", username="april")
    client.cookies.clear()
    sign_in(client, "april", approver.password)
    users = client.get("/admin/users", headers=HTML)
    assert users.status_code == 200 and "Add a user" not in users.text
    assert client.get("/admin/settings", headers=HTML).status_code == 403
    assert "Export CSV" not in client.get("/admin/audit", headers=HTML).text


def test_admin_creates_a_user_with_errors_next_to_the_fields(client, admin, db):
    csrf = sign_in(client, admin.username, admin.password)
    bad = client.post(
        "/admin/users",
        data={"username": "x y", "password": "short", "role": "member", "csrf_token": csrf},
        headers=HTML,
    )
    assert bad.status_code == 422
    assert re.search(r'id="new-username-error">Use letters, digits', bad.text)
    weak = client.post(
        "/admin/users",
        data={"username": "dora", "password": "short", "role": "member", "csrf_token": csrf},
        headers=HTML,
    )
    assert weak.status_code == 422
    assert re.search(r'id="new-password-error">The password must be at least 10', weak.text)
    made = client.post(
        "/admin/users",
        data={
            "username": "dora",
            "password": "long-enough-42",
            "role": "approver",
            "email": "dora@lab.example",
            "csrf_token": csrf,
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert made.status_code == 303 and made.headers["location"] == "/admin/users?q=dora"
    listed = client.get(made.headers["location"], headers=HTML).text
    assert "dora can now sign in as approver" in listed and "dora@lab.example" in listed
    taken = client.post(
        "/admin/users",
        data={"username": "DORA", "password": "long-enough-42", "csrf_token": csrf},
        headers=HTML,
    )
    assert taken.status_code == 409 and "is taken" in taken.text
    assert actions(db, "users.create")[-1:] == ["users.create"]
    assert len(actions(db, "web.")) == 2  # the two refusals the service made (policy, taken)


def test_admin_changes_role_deactivates_and_unlocks(client, admin, make_user, db):
    erin = make_user("member", username="erin")
    csrf = sign_in(client, admin.username, admin.password)
    back = "/admin/users?q=erin"
    r = client.post(
        f"/admin/users/{erin.id}",
        data={"role": "approver", "role_status": "active", "csrf_token": csrf, "back": back},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == back
    same = client.post(
        f"/admin/users/{erin.id}",
        data={"role": "approver", "role_status": "active", "csrf_token": csrf},
        headers=HTML,
    )
    assert "Nothing changed" in same.text
    too_high = client.post(
        f"/admin/users/{erin.id}",
        data={"role": "superadmin", "csrf_token": csrf},
        headers=HTML,
    )
    assert "only a superadmin may grant" in too_high.text.lower()
    client.post(f"/admin/users/{erin.id}/deactivate", data={"csrf_token": csrf}, headers=HTML)
    with db.scope() as s:
        s.get(User, erin.id).locked_until = datetime.now(UTC) + timedelta(minutes=5)
    page = client.get("/admin/users?state=deactivated", headers=HTML).text
    assert "erin" in page and "deactivated" in page
    client.post(f"/admin/users/{erin.id}/unlock", data={"csrf_token": csrf}, headers=HTML)
    client.post(f"/admin/users/{erin.id}/reactivate", data={"csrf_token": csrf}, headers=HTML)
    with db.scope() as s:
        user = s.get(User, erin.id)
        assert user.is_active and user.locked_until is None
    assert actions(db, "users.") == [
        "users.create",
        "users.create",
        "users.update",
        "users.update",
        "users.unlock",
        "users.update",
    ]


def test_users_page_costs_the_same_queries_for_any_page_size(client, admin, make_user, db):
    sign_in(client, admin.username, admin.password)
    for _ in range(3):
        make_user("member")
    with counting(db) as few:
        assert client.get("/admin/users", headers=HTML).status_code == 200
    for _ in range(25):
        make_user("viewer")
    with counting(db) as many:
        page = client.get("/admin/users?limit=100", headers=HTML)
    assert page.text.count('class="cell-main"') == 29  # the admin, 3 and 25
    assert len(many) == len(few)


def test_invitation_link_is_shown_once_and_works_once(client, admin, db):
    csrf = sign_in(client, admin.username, admin.password)
    bad = client.post(
        "/admin/invitations", data={"email": "not-an-email", "csrf_token": csrf}, headers=HTML
    )
    assert bad.status_code == 422 and 'id="invite-email-error"' in bad.text
    made = client.post(
        "/admin/invitations",
        data={"email": "fred@lab.example", "role": "member", "handle": "fred", "csrf_token": csrf},
        headers=HTML,
    )
    assert made.status_code == 201
    link = re.search(r'id="invite-link" type="text" value="([^"]+)"', made.text).group(1)
    assert link.startswith("http://127.0.0.1/invite/")
    token = link.rsplit("/", 1)[1]
    assert token not in client.get("/admin/invitations", headers=HTML).text
    with db.scope() as s:
        assert s.scalar(select(Invitation.token_hash)) != token  # stored hashed

    guest = client.__class__(client.app, base_url="http://127.0.0.1")
    form = guest.get(f"/invite/{token}", headers=HTML)
    assert form.status_code == 200 and 'value="fred"' in form.text
    data = {
        "username": "fred",
        "email": "fred@lab.example",
        "password": "river-stone-41",
        "password_confirm": "river-stone-42",
        "csrf_token": guest.cookies.get(FORM_COOKIE),
    }
    mismatch = guest.post(f"/invite/{token}", data=data, headers=HTML)
    assert mismatch.status_code == 422 and "The two passwords differ" in mismatch.text
    data["password_confirm"] = data["password"]
    done = guest.post(f"/invite/{token}", data=data, headers=HTML, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/login?username=fred"
    again = guest.get(f"/invite/{token}", headers=HTML)
    assert again.status_code == 410 and "has been used already" in again.text
    assert guest.get("/invite/not-a-real-token-at-all", headers=HTML).status_code == 404
    sign_in(guest, "fred", "river-stone-41")
    assert actions(db, "invitations.") == ["invitations.create", "invitations.accept"]


def test_settings_are_typed_saved_all_or_nothing_and_secrets_stay_hidden(client, admin, db):
    csrf = sign_in(client, admin.username, admin.password)
    page = client.get("/admin/settings", headers=HTML).text
    assert 'type="checkbox" id="setting-general-load_demo_on_first_run"' in page
    assert re.search(r'id="setting-approval-mode" name="approval.mode"', page)  # a select
    assert re.search(r'name="booking.max_duration_hours" type="number" value="168"', page)
    general = ["general.lab_name", "general.lab_timezone", "general.load_demo_on_first_run"]
    form = {"fields": general, "csrf_token": csrf}
    bad = client.post(
        "/admin/settings",
        data={**form, "general.lab_name": "Photonics Lab", "general.lab_timezone": "Mars/Olympus"},
        headers=HTML,
    )
    assert bad.status_code == 422
    assert re.search(r'id="setting-general-lab_timezone-error">Unknown time zone', bad.text)
    assert 'value="Photonics Lab"' in bad.text  # what was typed stays
    with db.scope() as s:
        assert settings_service.get(s, "general.lab_name") == "labkeeper"  # none was stored
    ok = client.post(
        "/admin/settings",
        data={
            **form,
            "general.lab_name": "Photonics Lab",
            "general.lab_timezone": "UTC",
            "general.load_demo_on_first_run": "on",
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/admin/settings#general"
    assert "Saved 1 setting." in client.get("/admin/settings", headers=HTML).text
    assert "<span>Photonics Lab</span>" in client.get("/", headers=HTML).text  # the header
    assert actions(db, "settings.") == ["settings.update"]  # unchanged values: no rows

    hook = "https://discord.example/api/webhooks/1/very-secret"
    secret = {"fields": ["notifications.discord_admin_webhook"], "csrf_token": csrf}
    client.post(
        "/admin/settings",
        data={**secret, "notifications.discord_admin_webhook": hook},
        headers=HTML,
    )
    shown = client.get("/admin/settings", headers=HTML).text
    assert "very-secret" not in shown and "Set: type to replace" in shown
    client.post("/admin/settings", data=secret, headers=HTML)  # left empty: kept
    with db.scope() as s:
        assert settings_service.get(s, "notifications.discord_admin_webhook") == hook
    client.post(
        "/admin/settings",
        data={**secret, "clear:notifications.discord_admin_webhook": "on"},
        headers=HTML,
    )
    client.post(
        "/admin/settings",
        data={**form, "general.lab_timezone": "UTC", "reset": "general.lab_name"},
        headers=HTML,
    )
    with db.scope() as s:
        assert settings_service.get(s, "notifications.discord_admin_webhook") is None
        assert settings_service.get(s, "general.lab_name") == "labkeeper"


def test_audit_page_filters_and_links_the_same_filters_to_the_export(client, admin, db):
    csrf = sign_in(client, admin.username, admin.password)
    with db.scope() as s:
        settings_service.put(s, key="general.lab_timezone", value="Europe/Dublin", actor=SYSTEM)
    client.post("/profile", data={"full_name": "Root", "csrf_token": csrf}, headers=HTML)
    everything = client.get("/admin/audit", headers=HTML).text
    assert "users.update_profile" in everything and "auth.login" in everything
    mine = client.get(f"/admin/audit?action=users.&actor={admin.username}", headers=HTML)
    assert "users.update_profile" in mine.text and "auth.login</td>" not in mine.text
    assert "1 entry matches the filters" in mine.text
    today = datetime.now(UTC).date()
    dated = client.get(f"/admin/audit?since={today}&until={today}&outcome=success", headers=HTML)
    assert "users.update_profile" in dated.text
    export = re.search(r'href="(/api/v1/audit/export.csv[^"]*)"', dated.text).group(1)
    export = export.replace("&amp;", "&")
    # Days are the lab's (Europe/Dublin) days, sent to the API with their offset.
    assert f"since={today}T00%3A00%3A00%2B0" in export and "outcome=success" in export
    csv = client.get(export)
    assert csv.status_code == 200 and "users.update_profile" in csv.text
    past = client.get("/admin/audit?until=2001-01-01", headers=HTML)
    assert "Nothing matches these filters" in past.text
    wrong = client.get("/admin/audit?since=yesterday&actor=nobody-at-all", headers=HTML)
    assert wrong.status_code == 422
    assert "Use a date like 2026-05-01" in wrong.text and "Nobody is called" in wrong.text


def test_profile_token_is_shown_once_and_password_change_checks(client, make_user, db):
    gina = make_user("member", username="gina")
    csrf = sign_in(client, "gina", gina.password)
    made = client.post(
        "/profile/tokens",
        data={"name": "ci", "expires_days": "30", "csrf_token": csrf},
        headers=HTML,
    )
    token = re.search(r'id="new-token" type="text" value="(lkt_[^"]+)"', made.text).group(1)
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()[
            "username"
        ]
        == "gina"
    )
    assert token not in client.get("/profile", headers=HTML).text
    with db.scope() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.name == "ci"))
        assert row is not None and row.expires_at is not None
    client.post(f"/profile/tokens/{row.id}/revoke", data={"csrf_token": csrf}, headers=HTML)
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
    wrong = client.post(
        "/profile/password",
        data={
            "current_password": "not-mine-1",
            "new_password": "brand-new-pass-1",
            "new_password_confirm": "brand-new-pass-1",
            "csrf_token": csrf,
        },
        headers=HTML,
    )
    assert wrong.status_code == 422
    assert re.search(r'id="pw-current_password-error">The current password is wrong', wrong.text)
    changed = client.post(
        "/profile/password",
        data={
            "current_password": gina.password,
            "new_password": "brand-new-pass-1",
            "new_password_confirm": "brand-new-pass-1",
            "csrf_token": csrf,
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert changed.status_code == 303
    assert client.get("/profile", headers=HTML).status_code == 200  # this sign-in goes on


def test_dashboard_shows_real_data_with_a_constant_number_of_queries(client, admin, db):
    from labkeeper.inventory import service as inventory
    from labkeeper.inventory.schemas import DeviceCreate, DeviceTypeCreate

    sign_in(client, admin.username, admin.password)
    with db.scope() as s:
        inventory.create_device_type(
            s, data=DeviceTypeCreate(name="roadm", category="optical"), actor=SYSTEM
        )
        for i in range(2):
            inventory.create_device(
                s, data=DeviceCreate(name=f"roadm-{i}", device_type="roadm"), actor=SYSTEM
            )
    with counting(db) as few:
        page = client.get("/", headers=HTML).text
    assert "Devices free now" in page and "roadm-1" in page and "of 2 devices" in page
    assert "Your next bookings" in page and "Recent activity" in page
    with db.scope() as s:
        for i in range(2, 12):
            inventory.create_device(
                s, data=DeviceCreate(name=f"roadm-{i}", device_type="roadm"), actor=SYSTEM
            )
    with counting(db) as many:
        assert "of 12 devices" in client.get("/", headers=HTML).text
    assert len(many) == len(few)
