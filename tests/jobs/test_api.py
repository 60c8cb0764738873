"""The jobs API: runs, entries, cancel, periodic tasks, permissions."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from labkeeper.admin.models import AuditLog
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device, DeviceType
from labkeeper.jobs import service
from labkeeper.jobs.engine import run_job
from tests.jobs.conftest import wait_for

RUNS = "/api/v1/jobs/runs"


def _enqueue(db, name, *, device_id=None, **params):
    with db.scope() as s:
        return service.enqueue(s, name, params=params, device_id=device_id).id


def _device(db) -> int:
    with db.scope() as s:
        kind = DeviceType(name="router")
        s.add(kind)
        s.flush()
        device = Device(name="r1", device_type_id=kind.id)
        s.add(device)
        s.flush()
        return device.id


def _audit(db, action):
    with db.scope(write=False) as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


def test_list_filter_and_paginate_runs(client, db, make_user):
    viewer = make_user("viewer")
    device = _device(db)
    ok = [_enqueue(db, "test.echo", value=i) for i in range(3)]
    bad = _enqueue(db, "test.fail")
    on_device = _enqueue(db, "test.echo", device_id=device)
    for run_id in [*ok, bad]:
        run_job(db, run_id)

    r = client.get(RUNS, params={"limit": 2}, headers=viewer.headers)
    assert r.status_code == 200, r.text
    page = r.json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 0)
    assert [i["id"] for i in page["items"]] == [on_device, bad]  # newest first
    second = client.get(RUNS, params={"limit": 2, "offset": 2}, headers=viewer.headers).json()
    assert [i["id"] for i in second["items"]] == [ok[2], ok[1]]

    def ids(**params):
        r = client.get(RUNS, params=params, headers=viewer.headers)
        assert r.status_code == 200, r.text
        return sorted(i["id"] for i in r.json()["items"])

    assert ids(status="failed") == [bad]
    assert ids(status="queued") == [on_device]
    assert ids(job_type="test.echo") == sorted([*ok, on_device])
    assert ids(device_id=device) == [on_device]
    assert ids(since=(utcnow() - timedelta(minutes=5)).isoformat()) == sorted([*ok, bad, on_device])
    assert ids(since=(utcnow() + timedelta(minutes=5)).isoformat()) == []
    assert (
        client.get(
            RUNS, params={"since": "2026-01-01T00:00:00"}, headers=viewer.headers
        ).status_code
        == 422
    )
    assert client.get(RUNS, params={"status": "lost"}, headers=viewer.headers).status_code == 422


def test_run_detail_and_entries_for_polling(client, db, make_user):
    viewer = make_user("viewer")
    run_id = _enqueue(db, "test.echo", entries=5)
    queued = client.get(f"{RUNS}/{run_id}/entries", headers=viewer.headers).json()
    assert queued["items"] == [] and queued["status"] == "queued" and not queued["finished"]
    assert queued["last_id"] == 0
    run_job(db, run_id)

    detail = client.get(f"{RUNS}/{run_id}", headers=viewer.headers).json()
    assert detail["status"] == "succeeded" and detail["done"] == 1
    assert detail["entry_counts"] == {"info": 5}

    first = client.get(
        f"{RUNS}/{run_id}/entries", params={"limit": 3}, headers=viewer.headers
    ).json()
    assert [e["message"] for e in first["items"]] == ["echo 0", "echo 1", "echo 2"]
    assert first["more"] and first["finished"] and first["status"] == "succeeded"
    rest = client.get(
        f"{RUNS}/{run_id}/entries", params={"after_id": first["last_id"]}, headers=viewer.headers
    ).json()
    assert [e["message"] for e in rest["items"]] == ["echo 3", "echo 4"]
    assert not rest["more"]
    empty = client.get(
        f"{RUNS}/{run_id}/entries", params={"after_id": rest["last_id"]}, headers=viewer.headers
    ).json()
    assert empty["items"] == [] and empty["last_id"] == rest["last_id"]


def test_missing_and_out_of_range_ids(client, admin):
    assert client.get(f"{RUNS}/12345", headers=admin.headers).status_code == 404
    assert client.get(f"{RUNS}/12345/entries", headers=admin.headers).status_code == 404
    assert client.post(f"{RUNS}/12345/cancel", headers=admin.headers).status_code == 404
    for bad in ("0", "-1", "99999999999", "abc"):
        assert client.get(f"{RUNS}/{bad}", headers=admin.headers).status_code == 422
    assert client.get(RUNS, params={"device_id": 10**12}, headers=admin.headers).status_code == 422


def test_cancel_through_the_api_is_audited(client, db, admin):
    run_id = _enqueue(db, "test.echo")
    r = client.post(f"{RUNS}/{run_id}/cancel", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    again = client.post(f"{RUNS}/{run_id}/cancel", headers=admin.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition"
    trail = _audit(db, "jobs.cancel")
    assert len(trail) == 1 and trail[0].entity_id == str(run_id)
    assert trail[0].actor_username == admin.username


def test_periodic_tasks_listed_and_run_now(client, db, admin, engine):
    tasks = {t["name"]: t for t in client.get("/api/v1/jobs/tasks", headers=admin.headers).json()}
    assert tasks["jobs.reap"]["every_seconds"] == 60
    assert tasks["jobs.cleanup"]["every_seconds"] == 86400
    assert tasks["jobs.cleanup"]["description"].startswith("Delete job logs older than")
    assert tasks["jobs.reap"]["next_run_at"] is None

    r = client.post("/api/v1/jobs/tasks/jobs.cleanup/run", headers=admin.headers)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["job_type"] == "jobs.cleanup" and run["created_by"] == admin.id
    assert wait_for(db, run["id"]).status == "succeeded"
    assert [a.entity_id for a in _audit(db, "jobs.run")] == [str(run["id"])]

    assert client.post("/api/v1/jobs/tasks/no.such/run", headers=admin.headers).status_code == 404
    # Only periodic system tasks run from here; other tasks need their domain's parameters.
    assert client.post("/api/v1/jobs/tasks/test.echo/run", headers=admin.headers).status_code == 404


def test_permissions(client, db, make_user):
    viewer, member = make_user("viewer"), make_user("member")
    run_id = _enqueue(db, "test.echo")
    assert client.get(RUNS).status_code == 401
    for account in (viewer, member):
        assert client.get(RUNS, headers=account.headers).status_code == 200
        assert client.get(f"{RUNS}/{run_id}", headers=account.headers).status_code == 200
        assert client.get("/api/v1/jobs/tasks", headers=account.headers).status_code == 200
        for url in (f"{RUNS}/{run_id}/cancel", "/api/v1/jobs/tasks/jobs.reap/run"):
            r = client.post(url, headers=account.headers)
            assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    with db.scope(write=False) as s:
        from labkeeper.jobs.models import JobLog

        assert s.get(JobLog, run_id).status == "queued"
