"""The audit trail: one row per change, in the same transaction, secrets removed, exportable."""

from __future__ import annotations

import csv
import io

from sqlalchemy import func, select

from labkeeper.admin.models import AuditLog


def audit_rows(db):
    with db.scope() as s:
        return list(s.scalars(select(AuditLog).order_by(AuditLog.id)))


def test_each_change_writes_one_row_with_actor_role_and_ip(client, admin, db):
    before = len(audit_rows(db))
    r = client.post(
        "/api/v1/users",
        headers=admin.headers,
        json={"username": "audited", "password": "audit-pass-1", "role": "member"},
    )
    assert r.status_code == 201
    rows = audit_rows(db)[before:]
    assert len(rows) == 1
    row = rows[0]
    assert (row.action, row.entity_type, row.entity_id) == (
        "users.create",
        "user",
        str(r.json()["id"]),
    )
    assert (row.actor_id, row.actor_username, row.actor_role) == (admin.id, "root-admin", "admin")
    assert row.ip and row.outcome == "success"
    assert "audit-pass-1" not in str(row.payload) and "password" not in (row.payload or {})


def test_reads_write_no_rows(client, admin, db):
    before = len(audit_rows(db))
    client.get("/api/v1/users", headers=admin.headers)
    client.get("/api/v1/auth/me", headers=admin.headers)
    assert len(audit_rows(db)) == before


def test_a_refused_change_is_recorded_as_failure_and_the_change_is_not(
    client, admin, make_user, db
):
    make_user("member", username="dup")
    before = len(audit_rows(db))
    r = client.post(
        "/api/v1/users", headers=admin.headers, json={"username": "dup", "password": "audit-pass-1"}
    )
    assert r.status_code == 409
    rows = audit_rows(db)[before:]
    assert [(x.outcome, x.action) for x in rows] == [("failure", "api.create_user")]
    assert "taken" in rows[0].message
    with db.scope() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.action == "users.create", AuditLog.outcome == "success")
            )
            == 2  # root-admin and dup, made by make_user
        )


def test_list_filters_and_csv_export(client, admin, make_user):
    viewer = make_user("viewer")
    client.put("/api/v1/settings/general.lab_name", headers=admin.headers, json={"value": "Lab A"})
    client.put("/api/v1/settings/general.lab_name", headers=admin.headers, json={"value": "Lab B"})
    page = client.get("/api/v1/audit?action=settings.&limit=1", headers=admin.headers).json()
    assert page["total"] == 2 and len(page["items"]) == 1
    assert page["items"][0]["payload"] == {"old": "Lab A", "new": "Lab B"}
    only_admin = client.get(f"/api/v1/audit?actor_id={admin.id}", headers=admin.headers).json()
    assert {i["actor_username"] for i in only_admin["items"]} == {"root-admin"}
    assert (
        client.get("/api/v1/audit?since=2026-01-01T00:00:00", headers=admin.headers).status_code
        == 422
    )
    r = client.get("/api/v1/audit/export.csv?action=settings.", headers=admin.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["action"] for row in rows] == ["settings.update", "settings.update"]
    assert client.get("/api/v1/audit", headers=viewer.headers).status_code == 403
    approver = make_user("approver")
    assert client.get("/api/v1/audit", headers=approver.headers).status_code == 200
    assert client.get("/api/v1/audit/export.csv", headers=approver.headers).status_code == 403
