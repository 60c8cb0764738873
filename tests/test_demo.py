"""The demo lab and the first run: `labkeeper demo`, and `serve --demo` on an empty database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from labkeeper import demo
from labkeeper.auth.models import User
from labkeeper.backups.models import ConfigBackup
from labkeeper.booking.models import Booking
from labkeeper.cli import app as cli
from labkeeper.config import Settings
from labkeeper.core.db import Database
from labkeeper.inventory.models import Device
from labkeeper.jobs.engine import run_job
from labkeeper.jobs.models import JobLog


def _count(db: Database, model: Any) -> int:
    with db.scope(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _statuses(db: Database) -> dict[str, str]:
    """Booking status by comment (one status per demo group)."""
    with db.scope(write=False) as s:
        return {r.comment: r.status for r in s.execute(select(Booking.comment, Booking.status))}


@pytest.fixture
def sims() -> Iterator[demo.DemoSimulators]:
    """The demo's simulators on free ports."""
    running = demo.DemoSimulators(ssh_port_base=0, polatis_port=0).start()
    assert not running.problems
    yield running
    running.stop()


def test_demo_command_loads_the_lab_once(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKEEPER_DATABASE_URL", db.engine.url.render_as_string(False))
    runner = CliRunner()

    first = runner.invoke(cli, ["demo"])
    assert first.exit_code == 0, first.output
    assert "24 devices" in first.output
    assert "alice" in first.output and demo.DEMO_PASSWORD in first.output
    counts = {m.__name__: _count(db, m) for m in (Device, User, Booking)}
    assert counts == {"Device": 24, "User": 5, "Booking": 17}
    statuses = _statuses(db)
    by_kind = {comment.split(": ", 1)[1]: status for comment, status in statuses.items()}
    assert by_kind == {
        "BGP convergence measurements": "COMPLETED",
        "400G ZR+ BER test over two ROADMs": "ACTIVE",
        "EVPN fabric bring-up": "ACTIVE",
        "Segment routing migration rehearsal": "CONFIRMED",
        "48-hour soak test of the metro ring": "PENDING",
    }
    with db.scope(write=False) as s:
        ports = {r.name: r.ssh_port for r in s.execute(select(Device.name, Device.ssh_port))}
        switch = s.scalar(select(Device).where(Device.name == demo.SWITCH_NAME))
    assert ports["core-rtr-01"] == 2201 and ports["pe-rtr-02"] == 2210
    assert switch is not None and (switch.mgmt_address, switch.ssh_port) == ("127.0.0.1", 8830)

    again = runner.invoke(cli, ["demo"])
    assert again.exit_code == 0, again.output
    assert "nothing to add" in again.output
    assert {m.__name__: _count(db, m) for m in (Device, User, Booking)} == counts


def test_demo_leaves_existing_accounts_alone(db: Database, make_user: Any) -> None:
    make_user("superadmin", username="boss")
    with db.scope() as s:
        report = demo.load(s)
    assert not report.users_created
    assert report.notes  # says why there are no bookings
    assert _count(db, User) == 1
    assert _count(db, Booking) == 0
    assert _count(db, Device) == 24


def test_demo_devices_answer_on_the_simulators(db: Database, sims: demo.DemoSimulators) -> None:
    assert sims.switch is not None
    with db.scope() as s:
        demo.load(s, ssh_ports=sims.device_ports, polatis_port=sims.switch.port)
        run_id = demo.queue_backup(s)
        provisions = list(
            s.scalars(select(JobLog.id).where(JobLog.job_type == "topology.provision"))
        )
    assert run_id is not None
    run_job(db, run_id)
    with db.scope(write=False) as s:
        run = s.get(JobLog, run_id)
        assert run is not None and run.status == "succeeded", run and run.status
        rows = s.execute(
            select(Device.name, ConfigBackup.content).join(
                ConfigBackup, ConfigBackup.device_id == Device.id
            )
        )
        backups = {r.name: r.content for r in rows}
    assert set(backups) == {row[0] for row in demo.SIMULATED}
    assert "hostname core-rtr-01" in backups["core-rtr-01"]
    # The topology booked now is patched on the switch: trx-01 -> roadm-01 -> roadm-02 -> trx-02.
    for job_id in provisions:
        run_job(db, job_id)
    assert sims.switch.cross_connects == {37: 1, 33: 2, 34: 6}


def _app(settings: Settings, db: Database, **changes: Any) -> Any:
    from labkeeper.app import create_app

    for key, value in changes.items():
        setattr(settings, key, value)
    return create_app(settings, db=db, start_background=False)


def test_first_run_loads_the_demo_into_an_empty_database(
    db: Database, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(settings, db, demo=True, demo_ssh_port_base=0, demo_polatis_port=0)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        out = capsys.readouterr().out
        assert "demo lab loaded" in out
        assert "admin" in out and demo.DEMO_PASSWORD in out
        assert _count(db, Device) == 24 and _count(db, User) == 5
        with db.scope(write=False) as s:
            queued = s.scalar(select(JobLog).where(JobLog.job_type == "backups.run"))
            assert queued is not None and queued.status == "queued"
        r = client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": demo.DEMO_PASSWORD}
        )
        assert r.status_code == 200, r.text
    # A second start finds accounts and loads nothing more, but still says how to sign in.
    with TestClient(_app(settings, db), base_url="http://127.0.0.1"):
        pass
    assert _count(db, Device) == 24
    again = capsys.readouterr().out
    assert "demo lab loaded" not in again and demo.DEMO_PASSWORD in again


def test_first_run_off_loads_nothing(db: Database, settings: Settings) -> None:
    with TestClient(_app(settings, db, demo=False), base_url="http://127.0.0.1"):
        pass
    assert _count(db, Device) == 0 and _count(db, User) == 0


def test_first_run_setting_off_keeps_the_database_empty(db: Database, settings: Settings) -> None:
    from labkeeper.admin import service as admin_settings
    from labkeeper.core.audit import SYSTEM

    with db.scope() as s:
        admin_settings.put(s, key="general.load_demo_on_first_run", value=False, actor=SYSTEM)
    app = _app(settings, db, demo=True, demo_ssh_port_base=0, demo_polatis_port=0)
    with TestClient(app, base_url="http://127.0.0.1"):
        pass
    assert _count(db, Device) == 0 and _count(db, User) == 0
