"""`labkeeper import devices FILE.csv` / `labkeeper export devices FILE.csv`."""

from __future__ import annotations

import csv

from sqlalchemy import func, select
from typer.testing import CliRunner

from labkeeper.importers import devices_csv
from labkeeper.inventory.models import Device, DeviceHistory

HEADER = "name,device_type,status,mgmt_address,ssh_port,switch_name,switch_in_port,switch_out_port"
CSV = f"""{HEADER},tags,notes
roadm-1,ROADM,available,10.0.0.1,,sw1,1,2,optical;core,first
server-1,Server,maintenance,10.0.0.2,2222,,,,compute,
bad-port,Server,available,10.0.0.3,,sw1,1,9,,takes roadm-1's input port
no-type,,available,,,,,,,
"""


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_import_export_round_trip(db, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(CSV)
    dry = devices_csv.run_import(db, source, dry_run=True)
    assert dry.created == 2
    with db.scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Device)) == 0

    report = devices_csv.run_import(db, source)
    counts = report.counts["devices.csv"]
    assert (counts.source, counts.created, counts.skipped) == (4, 2, 2)
    reasons = {p.ref: p.reason for p in report.problems}
    assert "taken" in reasons["line 4 (bad-port)"] or "port" in reasons["line 4 (bad-port)"]
    assert "device_type" in reasons["line 5 (no-type)"]

    out = tmp_path / "out.csv"
    assert devices_csv.export(db, out) == 2
    exported = {r["name"]: r for r in _rows(out)}
    assert exported["roadm-1"]["tags"] == "core;optical"
    assert exported["roadm-1"]["switch_in_port"] == "1" and exported["roadm-1"]["notes"] == "first"
    assert exported["server-1"]["ssh_port"] == "2222"
    assert exported["server-1"]["status"] == "maintenance"

    # The exported file imported again changes nothing.
    again = devices_csv.run_import(db, out)
    assert again.counts["devices.csv"].existing == 2 and again.created == 0
    assert not again.problems

    # An edit in the file updates the device through the service (with field history).
    lines = out.read_text().replace("10.0.0.2", "10.0.0.22")
    out.write_text(lines)
    edited = devices_csv.run_import(db, out)
    assert edited.counts["devices.csv"].updated == 1
    with db.scope(write=False) as s:
        server = s.scalars(select(Device).where(Device.name == "server-1")).one()
        assert server.mgmt_address == "10.0.0.22"
        history = s.scalars(select(DeviceHistory).where(DeviceHistory.device_id == server.id))
        assert [(h.field, h.old_value, h.new_value) for h in history] == [
            ("mgmt_address", "10.0.0.2", "10.0.0.22")
        ]


def test_cli_import_and_export_devices(db, tmp_path, monkeypatch):
    from labkeeper.cli import app as cli_app

    monkeypatch.setenv("LABKEEPER_DATABASE_URL", db.engine.url.render_as_string(False))
    monkeypatch.setenv("COLUMNS", "200")
    source = tmp_path / "in.csv"
    source.write_text(CSV)
    runner = CliRunner()
    result = runner.invoke(cli_app, ["import", "devices", str(source)])
    assert result.exit_code == 0, result.output
    assert "2 records imported; 2 not brought over" in result.output
    out = tmp_path / "out.csv"
    result = runner.invoke(cli_app, ["export", "devices", str(out)])
    assert result.exit_code == 0 and "2 devices written" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("hostname,colour\nx,red\n")
    result = runner.invoke(cli_app, ["import", "devices", str(bad)])
    assert result.exit_code == 2 and "name and device_type" in result.output
