"""Every change made through the backups API writes exactly one audit row."""

from __future__ import annotations

from sqlalchemy import func, select

from labkeeper.admin.models import AuditLog
from tests.backups.conftest import add_devices


def _audit(db) -> list[tuple[str, str | None]]:
    with db.scope(write=False) as s:
        return [
            (a.action, a.outcome)
            for a in s.scalars(select(AuditLog).order_by(AuditLog.id))
            if not a.action.startswith(("tokens.", "users."))
        ]


def test_one_audit_row_per_change(db, api):
    (device_id,) = add_devices(db, None, names=["r1"], ports=[None], tags=("core",))
    calls = [
        ("POST", "/credentials", 201, {"name": "c", "username": "u", "password": "p"}),
        ("PATCH", "/credentials/{credential}", 200, {"password": "q", "tags": [{"tag": "core"}]}),
        ("POST", "/backups/runs", 202, {"device_ids": [device_id]}),
        (
            "POST",
            "/scheduled-jobs",
            201,
            {"name": "j", "schedule_type": "cron", "cron_expression": "0 3 * * *"},
        ),
        ("PATCH", "/scheduled-jobs/{job}", 200, {"cron_expression": "0 4 * * *"}),
        ("POST", "/scheduled-jobs/{job}/disable", 200, None),
        ("POST", "/scheduled-jobs/{job}/enable", 200, None),
        ("POST", "/scheduled-jobs/{job}/run", 202, None),
        ("DELETE", "/scheduled-jobs/{job}", 204, None),
        ("DELETE", "/credentials/{credential}", 204, None),
    ]
    ids: dict[str, int] = {}
    expected = [
        "credentials.create",
        "credentials.update",
        "backups.run",
        "scheduled_jobs.create",
        "scheduled_jobs.update",
        "scheduled_jobs.disable",
        "scheduled_jobs.enable",
        "scheduled_jobs.run",
        "scheduled_jobs.delete",
        "credentials.delete",
    ]
    for (method, path, status, body), action in zip(calls, expected, strict=True):
        before = len(_audit(db))
        answer = api.call(method, path.format(**ids), status, json=body)
        if path == "/credentials":
            ids["credential"] = answer["id"]
        if path == "/scheduled-jobs":
            ids["job"] = answer["id"]
        rows = _audit(db)
        assert rows[before:] == [(action, "success")], (method, path, rows[before:])
    with db.scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(AuditLog)) >= len(expected)
