"""`labkeeper backup run` as operators run it: a real process, a summary, an exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from labkeeper.cli import app as cli_app
from labkeeper.jobs.models import JobLog
from tests.backups.conftest import add_credential, add_devices

ROOT = Path(__file__).resolve().parents[2]


def _labkeeper(db, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKEEPER_")}
    env.update(
        {
            "LABKEEPER_ENV": "test",
            "LABKEEPER_SECRET_KEYS": os.environ["LABKEEPER_SECRET_KEYS"],
            "LABKEEPER_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
            "COLUMNS": "200",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "labkeeper.cli", "backup", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow  # two `labkeeper` processes
def test_backup_run_in_a_process_reports_and_fails_when_a_device_fails(db, make_farm):
    farm = make_farm(2)
    add_devices(db, farm, names=["core1", "core2"], tags=("core",))
    add_devices(db, None, names=["spare"], ports=[farm.ports[0]], tags=("spare",))
    add_credential(db, "admin", tags={"core": 1, "spare": 1})

    ok = _labkeeper(db, "run", "--tag", "core")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "core1" in ok.stdout and "core2" in ok.stdout and "spare" not in ok.stdout
    assert "changed" in ok.stdout and "succeeded" in ok.stdout

    farm.do(farm.sim.refuse, 1, "admin")
    bad = _labkeeper(db, "run")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "auth" in bad.stdout and "partial" in bad.stdout
    with db.scope(write=False) as s:
        runs = list(s.scalars(select(JobLog).order_by(JobLog.id)))
    # The second run: spare is new (changed), core1 unchanged, core2 refused.
    assert [(r.total, r.changed, r.unchanged, r.failed) for r in runs] == [
        (2, 2, 0, 0),
        (3, 1, 1, 1),
    ]
    assert all(r.worker and r.worker.split(":")[1] != str(os.getpid()) for r in runs)


def test_backup_run_refuses_unknown_names(db, monkeypatch):
    monkeypatch.setenv(
        "LABKEEPER_DATABASE_URL", db.engine.url.render_as_string(hide_password=False)
    )
    runner = CliRunner()
    result = runner.invoke(cli_app, ["backup", "run", "--device", "nope"])
    assert result.exit_code == 2 and "no device called 'nope'" in result.output
    result = runner.invoke(cli_app, ["backup", "run", "--tag", "nope"])
    assert result.exit_code == 2 and "unknown tag" in result.output
