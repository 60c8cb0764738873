"""Settings: typed registry, validation, masking of secrets, atomic bulk changes."""

from __future__ import annotations

import time

from sqlalchemy import select, update

from labkeeper.admin.models import AuditLog, Setting


def setting(client, headers, key):
    rows = client.get("/api/v1/settings", headers=headers).json()
    return next(r for r in rows if r["key"] == key)


def test_defaults_are_listed_for_everyone_signed_in(client, make_user):
    viewer = make_user("viewer")
    tz = setting(client, viewer.headers, "general.lab_timezone")
    assert tz == {**tz, "value": "UTC", "default": "UTC", "is_default": True, "category": "general"}
    assert client.get("/api/v1/settings?category=booking", headers=viewer.headers).json()
    assert client.get("/api/v1/settings").status_code == 401


def test_put_validates_and_stores(client, admin):
    r = client.put(
        "/api/v1/settings/general.lab_timezone",
        headers=admin.headers,
        json={"value": "Europe/Dublin"},
    )
    assert (
        r.status_code == 200 and r.json()["value"] == "Europe/Dublin" and not r.json()["is_default"]
    )
    bad = client.put(
        "/api/v1/settings/general.lab_timezone",
        headers=admin.headers,
        json={"value": "Mars/Olympus"},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["field"] == "general.lab_timezone"
    assert "time zone" in bad.json()["error"]["message"]
    r = client.put(
        "/api/v1/settings/booking.max_duration_hours", headers=admin.headers, json={"value": 0}
    )
    assert r.status_code == 422
    assert (
        client.put(
            "/api/v1/settings/no.such.key", headers=admin.headers, json={"value": 1}
        ).status_code
        == 404
    )
    assert setting(client, admin.headers, "general.lab_timezone")["value"] == "Europe/Dublin"
    reset = client.delete("/api/v1/settings/general.lab_timezone", headers=admin.headers)
    assert reset.json()["value"] == "UTC" and reset.json()["is_default"]


def test_sensitive_values_are_masked_everywhere(client, admin, db):
    hook = "https://discord.example/api/webhooks/1/secret-part"
    r = client.put(
        "/api/v1/settings/notifications.discord_admin_webhook",
        headers=admin.headers,
        json={"value": hook},
    )
    assert r.status_code == 200 and r.json()["value"] == "***"
    assert setting(client, admin.headers, "notifications.discord_admin_webhook")["value"] == "***"
    with db.scope() as s:
        payloads = [row.payload for row in s.scalars(select(AuditLog))]
    assert hook not in str(payloads)
    bad = client.put(
        "/api/v1/settings/notifications.discord_admin_webhook",
        headers=admin.headers,
        json={"value": "ftp://nope"},
    )
    assert bad.status_code == 422


def test_bulk_patch_is_all_or_nothing(client, admin):
    r = client.patch(
        "/api/v1/settings",
        headers=admin.headers,
        json={"booking.max_duration_hours": 12, "approval.mode": "sometimes"},
    )
    assert r.status_code == 422
    assert setting(client, admin.headers, "booking.max_duration_hours")["value"] == 168
    r = client.patch(
        "/api/v1/settings",
        headers=admin.headers,
        json={"booking.max_duration_hours": 12, "approval.mode": "always"},
    )
    assert r.status_code == 200
    assert {x["key"]: x["value"] for x in r.json()} == {
        "booking.max_duration_hours": 12,
        "approval.mode": "always",
    }


def test_only_settings_writers_change_settings(client, make_user):
    approver = make_user("approver")
    r = client.put(
        "/api/v1/settings/general.lab_name", headers=approver.headers, json={"value": "x"}
    )
    assert r.status_code == 403


def test_a_change_here_applies_at_once_and_one_elsewhere_within_the_snapshot_time(db):
    from labkeeper.admin import service
    from labkeeper.core.audit import SYSTEM

    with db.scope(write=False) as s:
        before = service.get(s, "booking.max_duration_hours")
    # Through the service (this process): the next reader sees it, no waiting.
    with db.scope() as s:
        service.put(s, key="booking.max_duration_hours", value=before + 1, actor=SYSTEM)
        assert service.get(s, "booking.max_duration_hours") == before + 1  # its own write
    with db.scope(write=False) as s:
        assert service.get(s, "booking.max_duration_hours") == before + 1
    # Behind this process's back (as another server process would): seen once the snapshot
    # is older than SNAPSHOT_SECONDS.
    with db.engine.begin() as conn:
        conn.execute(
            update(Setting)
            .where(Setting.key == "booking.max_duration_hours")
            .values(value=before + 2)
        )
    time.sleep(service.SNAPSHOT_SECONDS + 0.1)
    with db.scope(write=False) as s:
        assert service.get(s, "booking.max_duration_hours") == before + 2
