"""`labkeeper import netraven-db`: every record of a NetRaven database arrives, once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from labkeeper.admin.models import AuditLog, Setting
from labkeeper.auth.models import RoleAssignment, User
from labkeeper.backups.models import ConfigBackup, Credential, CredentialTag
from labkeeper.core.security import decrypt
from labkeeper.importers import netraven, scheduler
from labkeeper.inventory.models import Device, DeviceTag, Tag, TagRule
from labkeeper.jobs.models import JobLog, JobLogEntry, ScheduledJob
from labkeeper.models import metadata
from tests.importers.seeds import BACKUP_FILES, PASSPHRASE, netraven_rows, seed_database


def _counts(db: Any) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


def _backup_dir(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    for name, content in BACKUP_FILES.items():
        (folder / name).write_text(content)
    return folder


def _nothing_lost(report: Any) -> None:
    rows = netraven_rows()
    for name, c in report.counts.items():
        assert c.source == c.created + c.existing + c.skipped == len(rows[name]), (name, c)


@pytest.mark.parametrize("source_backend", ["sqlite", "mariadb"])
def test_every_netraven_record_arrives_once(db, tmp_path, source_backend):
    folder = _backup_dir(tmp_path)
    with seed_database("netraven", source_backend, tmp_path) as url:
        report = netraven.run_import(db, url, passphrase=PASSPHRASE, backup_dir=folder)
        _nothing_lost(report)
        first = _counts(db)
        again = netraven.run_import(db, url, passphrase=PASSPHRASE, backup_dir=folder)
    _nothing_lost(again)
    assert again.created == 0 and again.skipped == report.skipped
    second = _counts(db)
    assert second.pop("audit_log") == first.pop("audit_log") + 1
    assert second == first

    skipped = {(p.table, p.ref) for p in report.problems if p.skipped}
    assert skipped == {
        ("tag_rules", "id r-2"),  # unknown rule type
        ("credentials", "lost"),  # encrypted with a key nobody gave
        ("credential_tags", "id ct-2"),  # its tag does not exist
        ("backups", "gone.cfg"),  # file not reachable
        ("scheduled_jobs", "id s-4"),  # unknown schedule type
        ("admin_settings", "backup.retention_days"),  # invalid value
    }
    reason = {p.ref: p.reason for p in report.problems}
    assert "no given key opens it" in reason["lost"]
    assert "cannot be read" in reason["gone.cfg"]

    with db.scope(write=False) as s:
        users = {u.username: u for u in s.scalars(select(User))}
        assert set(users) == {"nina", "oscar"}
        roles = {r.user_id: r.role for r in s.scalars(select(RoleAssignment))}
        assert roles == {users["nina"].id: "admin", users["oscar"].id: "member"}
        assert users["nina"].created_at.isoformat() == "2028-01-01T00:00:00+00:00"

        tags = {t.name: t for t in s.scalars(select(Tag))}
        assert set(tags) == {"core", "edge"}
        assert tags["core"].color == "#ff0000" and tags["edge"].color is None
        rule = s.scalars(select(TagRule)).one()
        assert rule.tag_id == tags["edge"].id
        assert rule.rule == {"field": "hostname", "operator": "regex", "value": "^edge"}

        devices = {d.name: d for d in s.scalars(select(Device))}
        core, edge = devices["core-sw1"], devices["edge-r1"]
        assert (core.hostname, core.mgmt_address, core.platform) == (
            "core-sw1",
            "10.1.0.1",
            "cisco_ios",
        )
        assert edge.ssh_port == 2222 and core.created_by == users["nina"].id
        links = {(d.device_id, d.tag_id, d.source) for d in s.scalars(select(DeviceTag))}
        # core by hand; edge by the imported rule, applied to the imported devices.
        assert links == {(core.id, tags["core"].id, "manual"), (edge.id, tags["edge"].id, "rule")}

        creds = {c.name: c for c in s.scalars(select(Credential))}
        assert set(creds) == {"lab-admin", "legacy"}
        assert decrypt(creds["lab-admin"].password_enc) == "s3cret-admin"
        assert decrypt(creds["legacy"].password_enc) == "plain-pw"
        assert "s3cret" not in creds["lab-admin"].password_enc
        link = s.scalars(select(CredentialTag)).one()
        assert (link.credential_id, link.tag_id, link.priority) == (
            creds["lab-admin"].id,
            tags["core"].id,
            10,
        )

        versions = list(s.scalars(select(ConfigBackup).order_by(ConfigBackup.version)))
        assert [(v.device_id, v.version) for v in versions] == [(core.id, 1), (core.id, 2)]
        assert [v.content for v in versions] == list(BACKUP_FILES.values())
        assert (versions[1].lines_added, versions[1].lines_removed) == (1, 1)
        assert versions[0].collected_at.isoformat() == "2028-03-01T00:00:00+00:00"
        assert core.last_backup_at == versions[1].collected_at

        jobs = {j.name: j for j in s.scalars(select(ScheduledJob))}
        assert set(jobs) == {"nightly", "hourly", "nightly (2)"}
        assert (jobs["nightly"].schedule_type, jobs["nightly"].time_of_day) == ("daily", "02:30")
        assert jobs["nightly"].device_id == core.id and jobs["nightly"].next_run_at is not None
        assert (jobs["hourly"].interval_seconds, jobs["hourly"].enabled) == (3600, False)
        assert (jobs["nightly (2)"].schedule_type, jobs["nightly (2)"].day_of_week) == (
            "weekly",
            6,
        )

        runs = {r.device_id: r for r in s.scalars(select(JobLog))}
        assert runs[core.id].status == "succeeded"
        assert runs[core.id].message == "1 device backed up"
        assert runs[edge.id].status == "cancelled"  # still running when copied
        entries = list(s.scalars(select(JobLogEntry).order_by(JobLogEntry.created_at)))
        assert [(e.job_log_id, e.level, e.message) for e in entries] == [
            (runs[core.id].id, "info", "connected to core-sw1"),
            (runs[core.id].id, "info", "configuration saved"),
            (runs[edge.id].id, "error", "timeout"),
        ]

        settings = {x.key: x.value for x in s.scalars(select(Setting))}
        assert settings == {"security.lockout_threshold": 7}
        audit = {
            a.action: a
            for a in s.scalars(select(AuditLog).where(AuditLog.action.not_like("import.%")))
        }
        assert (audit["login"].entity_type, audit["login"].actor_id) == ("auth", users["nina"].id)
        assert audit["create"].entity_id == "d-2" and audit["create"].actor_id is None


def test_without_the_key_credentials_are_listed_and_the_rest_arrives(db, tmp_path):
    with seed_database("netraven", "sqlite", tmp_path) as url:
        dry = netraven.run_import(db, url, dry_run=True)
        assert _counts(db)["users"] == 0
        report = netraven.run_import(db, url)
    assert report.created == dry.created
    reasons = {p.ref: p.reason for p in report.problems if p.table == "credentials"}
    assert "no --source-passphrase or --source-key-file" in reasons["lab-admin"]
    assert reasons["legacy"] == "password was stored in clear; it is encrypted now"
    # Backups without --backup-dir: the relative files are not found, and say so.
    assert report.counts["backups"].skipped == 3


def test_key_file_with_key_ids(db, tmp_path):
    import base64
    import hashlib

    key = base64.urlsafe_b64encode(hashlib.sha256(PASSPHRASE.encode()).digest()).decode()
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"default": key}))
    with seed_database("netraven", "sqlite", tmp_path) as url:
        report = netraven.run_import(db, url, key_file=keys)
    assert report.counts["credentials"].created == 2
    with db.scope(write=False) as s:
        stored = s.scalar(select(Credential.password_enc).where(Credential.name == "lab-admin"))
    assert decrypt(stored) == "s3cret-admin"


def test_both_seeds_merge_users_and_devices_by_name(db, tmp_path):
    from tests.importers.seeds import SCHEDULER_ROWS

    rows = netraven_rows()
    rows["users"][0]["username"] = "alice"  # the same person in both systems
    rows["devices"][0]["hostname"] = "roadm-1"  # the same device
    with seed_database("scheduler", "sqlite", tmp_path, SCHEDULER_ROWS) as url:
        scheduler.run_import(db, url)
    with seed_database("netraven", "sqlite", tmp_path, rows) as url:
        report = netraven.run_import(db, url, passphrase=PASSPHRASE)
    assert report.counts["users"].existing == 1 and report.counts["devices"].existing == 1
    with db.scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.username == "alice"))
        roadm = s.scalars(select(Device).where(Device.name == "roadm-1")).one()
        # Scheduler's address kept; NetRaven's platform and hostname filled in.
        assert (roadm.mgmt_address, roadm.platform, roadm.hostname) == (
            "10.0.0.1",
            "cisco_ios",
            "roadm-1",
        )
