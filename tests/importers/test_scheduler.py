"""`labkeeper import scheduler-db`: every record of a scheduler database arrives, once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from labkeeper.admin.models import AuditLog, Setting
from labkeeper.auth.models import Invitation, RoleAssignment, User
from labkeeper.booking.models import Booking, BookingCollaborator, BookingFavorite
from labkeeper.core.security import token_hash
from labkeeper.importers import scheduler
from labkeeper.importers.records import UNUSABLE
from labkeeper.inventory.models import (
    Device,
    DeviceHealthSnapshot,
    DeviceOwnership,
    DeviceTag,
    DeviceType,
    MaintenanceWindow,
    Tag,
)
from labkeeper.models import metadata
from labkeeper.topology.models import Topology, TopologyReview
from tests.importers.seeds import SCHEDULER_ROWS, seed_database


def _counts(db: Any) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


def _nothing_lost(report: Any) -> None:
    for name, c in report.counts.items():
        assert c.source == c.created + c.updated + c.existing + c.skipped, (name, c)
        assert c.source == len(SCHEDULER_ROWS[name]), name


@pytest.mark.parametrize("source_backend", ["sqlite", "mariadb"])
def test_every_scheduler_record_arrives_once(db, tmp_path, source_backend):
    with seed_database("scheduler", source_backend, tmp_path) as url:
        report = scheduler.run_import(db, url)
        _nothing_lost(report)
        after_first = _counts(db)
        again = scheduler.run_import(db, url)
    _nothing_lost(again)
    # The second run finds everything: nothing created, the same records skipped.
    assert again.created == 0
    assert again.skipped == report.skipped
    second = _counts(db)
    assert second.pop("audit_log") == after_first.pop("audit_log") + 1  # the import's own row
    assert second == after_first

    skipped = {(p.table, p.ref) for p in report.problems if p.skipped}
    assert skipped == {
        ("booking_table", "booking_id 15"),  # a collaborator copy without its owner's row
        ("booking_table", "booking_id 16"),  # ends before it starts
        ("topology_table", "id 2"),  # nodes not a list
        ("device_tags", "id 3"),  # no such device
        ("admin_settings", "ui.theme"),  # not a labkeeper setting
    }
    reasons = " | ".join(p.reason for p in report.problems)
    assert "imported as CONFLICTING" in reasons and "password must be reset" not in reasons
    waitlisted = {p.ref: p.reason for p in report.problems if "CONFLICTING" in p.reason}
    assert set(waitlisted) == {"booking_id 13", "booking_id 17"}
    assert "overlaps booking" in waitlisted["booking_id 13"]
    assert "overlaps maintenance window" in waitlisted["booking_id 17"]
    assert "2030-01-01 08:00 to 2030-01-01 12:00 UTC" in waitlisted["booking_id 17"]

    with db.scope(write=False) as s:
        users = {u.username: u for u in s.scalars(select(User))}
        assert set(users) == {"alice", "bob", "carol", "dave"}
        assert users["alice"].discord_id == "111" and users["alice"].email == "alice@lab.example"
        assert users["alice"].password_hash == SCHEDULER_ROWS["user_table"][0]["password"]
        assert users["carol"].password_hash.startswith("$2b$")  # bare SHA-256 wrapped
        assert users["dave"].password_hash == UNUSABLE
        roles = {
            r.user_id: r for r in s.scalars(select(RoleAssignment))
        }  # every user has exactly one
        assert roles[users["alice"].id].role == "admin"
        bob_role = roles[users["bob"].id]
        assert (bob_role.role, bob_role.approval_limits, bob_role.permissions) == (
            "approver",
            {"max_hours": 8},
            {"bookings:export": True},
        )
        assert roles[users["carol"].id].role == "member"

        devices = {d.name: d for d in s.scalars(select(Device))}
        assert set(devices) == {"roadm-1", "server-1", "device-3"}
        roadm = devices["roadm-1"]
        assert (roadm.switch_name, roadm.switch_in_port, roadm.switch_out_port) == ("sw1", 2, 1)
        assert roadm.mgmt_address == "10.0.0.1" and roadm.reachability == "up"
        assert devices["server-1"].status == "maintenance"
        # Device 3 claimed server-1's ports: kept, without ports.
        assert devices["device-3"].switch_in_port is None
        types = {t.id: t for t in s.scalars(select(DeviceType))}
        assert types[roadm.device_type_id].name == "ROADM"
        assert types[roadm.device_type_id].category == "optical"
        window = s.scalars(select(MaintenanceWindow)).one()
        assert window.device_id == roadm.id
        assert window.start_time.isoformat() == "2030-01-01T08:00:00+00:00"
        assert window.end_time.isoformat() == "2030-01-01T12:00:00+00:00"
        tags = {
            (dt.device_id, name) for dt, name in s.execute(select(DeviceTag, Tag.name).join(Tag))
        }
        assert tags == {(roadm.id, "optical"), (devices["server-1"].id, "compute")}
        owner = s.scalars(select(DeviceOwnership)).one()
        assert (owner.device_id, owner.owner_id, owner.assigned_by) == (
            roadm.id,
            users["bob"].id,
            users["alice"].id,
        )
        snap = s.scalars(select(DeviceHealthSnapshot)).one()
        assert snap.latency_ms == 1.5 and snap.metrics == {"latency_ms": 1.5}

        bookings = {(b.grouped_booking_id, b.device_id): b for b in s.scalars(select(Booking))}
        assert set(bookings) == {
            ("g-1", roadm.id),
            ("g-1", devices["server-1"].id),
            ("g-2", roadm.id),
            ("g-3", devices["server-1"].id),
            ("g-6", roadm.id),
        }
        first = bookings[("g-1", roadm.id)]
        assert first.status == "CONFIRMED" and first.user_id == users["alice"].id
        assert first.created_at.isoformat() == "2029-12-01T10:00:00+00:00"
        assert first.comment == "pair"
        # Bob's overlapping pending booking is waitlisted, not silently double-booked.
        assert bookings[("g-2", roadm.id)].status == "CONFLICTING"
        assert bookings[("g-3", devices["server-1"].id)].status == "COMPLETED"
        # Carol's approved booking runs into roadm-1's maintenance: waitlisted too.
        assert bookings[("g-6", roadm.id)].status == "CONFLICTING"
        links = {(c.grouped_booking_id, c.user_id) for c in s.scalars(select(BookingCollaborator))}
        assert links == {("g-1", users["bob"].id), ("g-3", users["alice"].id)}

        favourite = s.scalars(select(BookingFavorite)).one()
        assert favourite.name == "my pair" and favourite.grouped_booking_id == "g-1"
        assert [d["device_id"] for d in favourite.device_snapshot] == [
            roadm.id,
            devices["server-1"].id,
        ]
        topology = s.scalars(select(Topology)).one()
        assert topology.nodes[0]["device_id"] == roadm.id
        assert topology.updated_at.isoformat() == "2029-11-02T10:00:00+00:00"
        review = s.scalars(select(TopologyReview)).one()
        assert (review.topology_id, review.status, review.resolved_by) == (
            topology.id,
            "approved",
            users["alice"].id,
        )
        settings = {x.key: x.value for x in s.scalars(select(Setting))}
        assert settings == {"general.lab_name": "Open Lab", "booking.max_duration_hours": 72}
        invitation = s.scalars(select(Invitation)).one()
        assert invitation.token_hash == token_hash("invite-token-1")
        assert (invitation.role, invitation.handle) == ("viewer", "erin")
        audit = {
            a.action: a
            for a in s.scalars(select(AuditLog).where(AuditLog.action.not_like("import.%")))
        }
        assert set(audit) == {"approve_booking", "login"}
        assert audit["approve_booking"].actor_username == "alice"
        assert audit["approve_booking"].payload == {"note": "ok"}
        assert audit["login"].outcome == "failure"


def test_live_bookings_over_labkeeper_maintenance_are_waitlisted(db, tmp_path):
    # server-1 is already in labkeeper, with a window over the g-1 booking's afternoon and a
    # cancelled one (which blocks nothing) over the whole day.
    with db.scope() as s:
        kind = DeviceType(name="Server", category="compute")
        s.add(kind)
        s.flush()
        server = Device(name="server-1", device_type_id=kind.id, status="available")
        s.add(server)
        s.flush()
        s.add_all(
            [
                MaintenanceWindow(
                    device_id=server.id,
                    start_time=datetime(2030, 2, 1, 16, tzinfo=UTC),
                    end_time=datetime(2030, 2, 1, 18, tzinfo=UTC),
                    reason="PSU swap",
                ),
                MaintenanceWindow(
                    device_id=server.id,
                    start_time=datetime(2030, 2, 1, tzinfo=UTC),
                    end_time=datetime(2030, 2, 2, tzinfo=UTC),
                    reason="called off",
                    cancelled_at=datetime(2029, 1, 1, tzinfo=UTC),
                ),
            ]
        )
        server_id = server.id
    with seed_database("scheduler", "sqlite", tmp_path) as url:
        report = scheduler.run_import(db, url)
        again = scheduler.run_import(db, url)
    assert again.created == 0
    waitlisted = {p.ref: p.reason for p in report.problems if "CONFLICTING" in p.reason}
    assert set(waitlisted) == {"booking_id 11", "booking_id 13", "booking_id 17"}
    assert waitlisted["booking_id 11"].startswith("CONFIRMED booking overlaps maintenance window")
    assert "2030-02-01 16:00 to 2030-02-01 18:00 UTC" in waitlisted["booking_id 11"]
    with db.scope(write=False) as s:
        statuses = {
            (b.grouped_booking_id, b.device_id == server_id): b.status
            for b in s.scalars(select(Booking))
        }
    assert statuses[("g-1", True)] == "CONFLICTING"
    assert statuses[("g-1", False)] == "CONFIRMED"  # roadm-1's part of the pair is free


def test_dry_run_reports_and_writes_nothing(db, tmp_path):
    before = _counts(db)
    with seed_database("scheduler", "sqlite", tmp_path) as url:
        report = scheduler.run_import(db, url, dry_run=True)
    assert report.dry_run and report.created > 20
    assert report.counts["user_table"].created == 4
    assert _counts(db) == before


def test_legacy_hash_user_signs_in_and_is_rehashed(db, client, tmp_path):
    with seed_database("scheduler", "sqlite", tmp_path) as url:
        scheduler.run_import(db, url)
    for username, password in (("alice", "alice-pass-1"), ("carol", "carol-pass-1")):
        wrong = client.post("/api/v1/auth/login", json={"username": username, "password": "x"})
        assert wrong.status_code == 401
        ok = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert ok.status_code == 200, ok.text
        token = ok.json()["access_token"]
        me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["username"] == username
        with db.scope(write=False) as s:
            stored = s.scalar(select(User.password_hash).where(User.username == username))
        assert stored.startswith("$argon2id$")
        again = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert again.status_code == 200
    dave = client.post("/api/v1/auth/login", json={"username": "dave", "password": "plaintext?"})
    assert dave.status_code == 401


def test_cli_shows_progress_summary_and_problems(db, tmp_path, monkeypatch):
    from labkeeper.cli import app as cli_app

    monkeypatch.setenv("LABKEEPER_DATABASE_URL", db.engine.url.render_as_string(False))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    with seed_database("scheduler", "sqlite", tmp_path) as url:
        dry = runner.invoke(cli_app, ["import", "scheduler-db", url, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "dry run: nothing was written" in dry.output
        assert "booking_id 16" in dry.output and "ends before it starts" in dry.output
        assert "user_table" in dry.output and "would be imported" in dry.output
        with db.scope(write=False) as s:
            assert s.scalar(select(func.count()).select_from(User)) == 0
        real = runner.invoke(cli_app, ["import", "scheduler-db", url, "--no-progress"])
        assert real.exit_code == 0, real.output
        assert "records imported; 5 not brought over" in real.output
    missing = runner.invoke(cli_app, ["import", "scheduler-db", "nonsense://x"])
    assert missing.exit_code == 2 and "unsupported" in missing.output
