"""Backup runs over real SSH against simulated devices: credentials, storage, failures."""

from __future__ import annotations

import socket
import threading
import time

from sqlalchemy import select

from labkeeper.admin import service as settings
from labkeeper.backups.models import ConfigBackup, Credential, CredentialTag
from labkeeper.core.audit import SYSTEM
from labkeeper.drivers.cli import MASK
from labkeeper.inventory.models import Device
from labkeeper.jobs.engine import run_job
from labkeeper.jobs.models import JobLog
from tests.backups.conftest import add_credential, add_devices, backup_now, device_entries


def _versions(db, device_id):
    with db.scope(write=False) as s:
        return list(
            s.scalars(
                select(ConfigBackup)
                .where(ConfigBackup.device_id == device_id)
                .order_by(ConfigBackup.version)
            )
        )


def _snapshot(db, device_id):
    return [(v.id, v.version, v.content_hash, v.content) for v in _versions(db, device_id)]


def _device(db, device_id) -> Device:
    with db.scope(write=False) as s:
        return s.get(Device, device_id)


def _counts(db, model, **where):
    with db.scope(write=False) as s:
        row = s.scalar(select(model).filter_by(**where))
        return row.success_count, row.failure_count


def test_credentials_by_tag_priority_fall_back_on_refusal_and_remember_the_good_one(db, make_farm):
    farm = make_farm(2, enable_secret="en-secret")
    ids = add_devices(db, farm, tags=("lab", "core"))
    wrong_pass = add_credential(db, "wrong-pass", password="nope", tags={"lab": 10})
    wrong_enable = add_credential(
        db, "wrong-enable", enable_secret="not-it", tags={"lab": 20, "core": 30}
    )
    right = add_credential(db, "right", enable_secret="en-secret", tags={"core": 50})
    unused = add_credential(db, "unused", enable_secret="en-secret", tags={"other": 1})

    run = backup_now(db)
    assert (run.status, run.total, run.done, run.changed, run.failed) == ("succeeded", 2, 2, 2, 0)
    for device_id, entry in device_entries(db, run.id).items():
        assert entry.details["tried_credentials"] == [wrong_pass, wrong_enable, right]
        assert entry.details["credential"] == "right" and entry.details["status"] == "changed"
        assert _device(db, device_id).last_credential_id == right
    assert _counts(db, Credential, id=wrong_pass) == (0, 2)
    assert _counts(db, Credential, id=wrong_enable) == (0, 2)
    assert _counts(db, Credential, id=right) == (2, 0)
    assert _counts(db, Credential, id=unused) == (0, 0)
    # Counted against the tag link that chose the credential (its best priority).
    with db.scope(write=False) as s:
        links = {
            (link.credential_id, link.priority): (link.success_count, link.failure_count)
            for link in s.scalars(select(CredentialTag))
        }
    assert links[(wrong_enable, 20)] == (0, 2) and links[(wrong_enable, 30)] == (0, 0)
    assert links[(right, 50)] == (2, 0)

    # Next time the last good credential goes first: nothing is refused any more.
    again = backup_now(db)
    assert (again.unchanged, again.failed) == (2, 0)
    for entry in device_entries(db, again.id).values():
        assert entry.details["tried_credentials"] == [right]
    assert _counts(db, Credential, id=wrong_pass) == (0, 2)
    assert _counts(db, Credential, id=right) == (4, 0)
    assert all(len(_versions(db, d)) == 1 for d in ids)


def test_change_only_storage_with_diff_stats_and_masked_secrets(db, make_farm):
    farm = make_farm(1)
    (device_id,) = add_devices(db, farm)
    add_credential(db, "admin")
    sim = farm.device(0)

    first = backup_now(db)
    assert (first.changed, first.unchanged) == (1, 0)
    (v1,) = _versions(db, device_id)
    assert v1.version == 1 and v1.job_log_id == first.id and not v1.is_automatic
    assert v1.lines_added == v1.line_count and v1.lines_removed == 0
    assert v1.size_bytes == len(v1.content.encode()) and len(v1.content_hash) == 64
    # Secrets are masked at the value: the lines stay, readable; noise lines are gone.
    assert sim.secrets and not [x for x in sim.secrets if x in v1.content]
    assert MASK in v1.content and "enable secret" in v1.content
    assert "ntp clock-period" not in v1.content and "Last configuration change" not in v1.content
    assert sim.hostname in v1.content

    # Unchanged device, and a change of the noise only: nothing new is stored.
    assert backup_now(db).unchanged == 1
    farm.do(farm.sim.touch, 0)
    touched = backup_now(db)
    assert (touched.changed, touched.unchanged) == (0, 1)
    assert len(_versions(db, device_id)) == 1

    # A real change: a new version with diff stats against the previous one.
    farm.do(farm.sim.append_config_line, 0, "ntp server 10.9.9.9")
    farm.do(farm.sim.append_config_line, 0, "logging host 10.8.8.8")
    removed = farm.do(farm.sim.delete_config_lines, 0, "ip domain name")
    assert removed == 1
    changed = backup_now(db)
    assert (changed.changed, changed.unchanged) == (1, 0)
    v1_again, v2 = _versions(db, device_id)
    assert v1_again.content == v1.content  # the old version is untouched
    assert (v2.version, v2.lines_added, v2.lines_removed) == (2, 2, 1)
    assert "ntp server 10.9.9.9" in v2.content and v2.content_hash != v1.content_hash
    entry = device_entries(db, changed.id)[device_id]
    assert entry.details | {"version": 2, "lines_added": 2, "lines_removed": 1} == entry.details
    device = _device(db, device_id)
    assert device.last_backup_status == "changed" and device.last_backup_at is not None


def test_failures_are_classified_per_device_while_the_others_succeed(db, make_farm, quick):
    farm = make_farm(3)
    ok, hanging, refusing = add_devices(db, farm, names=["ok", "hangs", "refuses"])
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    (unreachable,) = add_devices(db, None, names=["closed"], ports=[closed.getsockname()[1]])
    (no_address,) = add_devices(db, None, names=["no-address"], ports=[None])
    (orphan,) = add_devices(db, None, names=["orphan"], ports=[farm.ports[0]], tags=("x",))
    add_credential(db, "admin")
    try:
        first = backup_now(db, device_ids=[ok, hanging, refusing])
        assert first.changed == 3
        stored = {d: _snapshot(db, d) for d in (ok, hanging, refusing)}

        farm.do(farm.sim.set_hang, 1, True)
        farm.do(farm.sim.refuse, 2, "admin")
        farm.do(farm.sim.append_config_line, 0, "ntp server 10.1.1.1")
        started = time.monotonic()
        run = backup_now(db)
        assert time.monotonic() - started < 10
    finally:
        closed.close()

    assert (run.status, run.total, run.done, run.changed, run.failed) == ("partial", 6, 6, 1, 5)
    entries = device_entries(db, run.id)
    expect = {
        ok: "changed",
        hanging: "timeout",
        refusing: "auth",
        unreachable: "unreachable",
        no_address: "no_address",
        orphan: "no_credentials",
    }
    assert {d: e.details["status"] for d, e in entries.items()} == expect
    for device_id, status in expect.items():
        assert _device(db, device_id).last_backup_status == status
        if status != "changed":
            assert entries[device_id].level == "error"
            assert entries[device_id].details["failure"] == status
    assert "no management address" in entries[no_address].message
    assert "no credential matches" in entries[orphan].message
    # Nothing already stored is lost or overwritten by a failure.
    assert _snapshot(db, hanging) == stored[hanging]
    assert _snapshot(db, refusing) == stored[refusing]
    assert len(_versions(db, ok)) == 2


def test_run_through_the_api_with_its_job_log_and_live_stream(db, make_farm, api, make_user):
    farm = make_farm(2)
    first, second = add_devices(db, farm)
    add_devices(db, None, names=["elsewhere"], ports=[farm.ports[0]], tags=("other",))
    add_credential(db, "admin")

    assert api.call("POST", "/backups/runs", 422, json={"tags": ["nope"]})["error"]["details"]
    assert api.call("POST", "/backups/runs", 422, json={"device_ids": [999999]})
    queued = api.call("POST", "/backups/runs", 202, json={"tags": ["lab"]})
    assert queued["status"] == "queued" and queued["params"]["tag_ids"]
    assert run_job(db, queued["id"]) == "succeeded"

    viewer = make_user("viewer")
    run = api.client.get(f"/api/v1/jobs/runs/{queued['id']}", headers=viewer.headers).json()
    assert (run["total"], run["done"], run["changed"], run["failed"]) == (2, 2, 2, 0)
    results = api.call("GET", f"/backups/runs/{queued['id']}/devices")
    assert {r["device_id"] for r in results} == {first, second}
    assert all(r["details"]["duration_ms"] > 0 and r["details"]["credential"] for r in results)

    with api.client.stream(
        "GET", f"/api/v1/backups/runs/{queued['id']}/stream", headers=viewer.headers
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    assert body.count("event: entry") >= 3 and "event: end" in body
    assert '"status": "succeeded"' in body
    last = max(int(line[4:]) for line in body.splitlines() if line.startswith("id: "))
    resumed = api.client.get(
        f"/api/v1/backups/runs/{queued['id']}/stream",
        headers={**viewer.headers, "Last-Event-ID": str(last)},
    ).text
    assert "event: entry" not in resumed and "event: end" in resumed
    # A run nobody has picked up yet: the state, then a reconnect hint instead of waiting.
    waiting = api.call("POST", "/backups/runs", 202, json={"device_ids": [first]})
    hint = api.client.get(f"/api/v1/backups/runs/{waiting['id']}/stream", headers=viewer.headers)
    assert '"status": "queued"' in hint.text and "retry: " in hint.text
    api.call("GET", "/backups/runs/999999/stream", 404)

    with db.scope(write=False) as s:
        assert s.scalar(select(JobLog.id).where(JobLog.id == queued["id"])) is not None


def test_cancel_a_running_backup(db, make_farm, api):
    farm = make_farm(6, latency_ms=150)
    add_devices(db, farm)
    add_credential(db, "admin")
    with db.scope() as s:
        settings.put(s, key="backup.concurrency", value=1, actor=SYSTEM)
    queued = api.call("POST", "/backups/runs", 202, json={})
    worker = threading.Thread(target=run_job, args=(db, queued["id"]))
    worker.start()
    deadline = time.monotonic() + 20
    while api.call("GET", f"/jobs/runs/{queued['id']}")["done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    api.call("POST", f"/jobs/runs/{queued['id']}/cancel")
    worker.join(20)
    run = api.call("GET", f"/jobs/runs/{queued['id']}")
    assert run["status"] == "cancelled"
    assert 1 <= run["done"] < 6 and run["total"] == 6
    assert len(api.call("GET", f"/backups/runs/{queued['id']}/devices")) == run["done"]


def test_the_run_time_limit_stops_what_is_still_running(db, make_farm):
    from labkeeper.backups.tasks import RunConfig, collect_devices

    farm = make_farm(2)
    ok, hanging = add_devices(db, farm)
    add_credential(db, "admin")
    farm.do(farm.sim.set_hang, 1, True)
    with db.scope() as s:
        run = JobLog(job_type="backups.run", status="running", total=2)
        s.add(run)
        s.flush()
        run_id = run.id
    cfg = RunConfig(concurrency=10, timeout=30, run_timeout=1, retries=0, unit_size=1)
    started = time.monotonic()
    added = collect_devices(
        db,
        job_log_id=run_id,
        device_ids=[ok, hanging],
        cfg=cfg,
        automatic=False,
        cancelled=lambda: False,
    )
    assert time.monotonic() - started < 5  # not the 30 s a device may take
    assert added == {"done": 2, "changed": 1, "unchanged": 0, "failed": 1, "unwritten": 0}
    entries = device_entries(db, run_id)
    assert entries[hanging].details["status"] == "timeout"
    assert "run time limit of 1 s" in entries[hanging].message
    assert entries[ok].details["status"] == "changed"
