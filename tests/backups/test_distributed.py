"""Redis mode: two worker processes share one run's devices, and every result is recorded once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import func, select

from labkeeper.admin import service as settings_service
from labkeeper.backups import service
from labkeeper.backups.models import ConfigBackup
from labkeeper.config import Settings
from labkeeper.core.audit import SYSTEM
from labkeeper.jobs.engine import start_engine
from labkeeper.jobs.models import JobLog
from tests.backups.conftest import add_credential, add_devices, device_entries

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]
DEVICES = 16


def _worker(db, redis_url: str, namespace: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKEEPER_")}
    env.update(
        {
            "LABKEEPER_ENV": "test",
            "LABKEEPER_SECRET_KEYS": os.environ["LABKEEPER_SECRET_KEYS"],
            "LABKEEPER_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
            "LABKEEPER_REDIS_URL": redis_url,
            "LABKEEPER_JOBS_NAMESPACE": namespace,
            "LABKEEPER_LOG_LEVEL": "INFO",
        }
    )
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "labkeeper.jobs.worker", "--threads", "3"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def _wait(check, timeout: float, what: str, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(p.read_text()[-2000:] for p in logs)
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.1)


def test_two_workers_share_a_runs_devices_and_record_each_result_once(
    db, settings, redis_url, tmp_path, make_farm, monkeypatch
):
    namespace = f"lktest-{uuid4().hex[:10]}"  # parallel test runs never share a queue
    monkeypatch.setenv("LABKEEPER_JOBS_NAMESPACE", namespace)
    # Some latency per command, so one worker cannot finish everything before the other starts.
    farm = make_farm(DEVICES, latency_ms=60)
    ids = add_devices(db, farm)
    add_credential(db, "admin")
    with db.scope() as s:
        settings_service.put(s, key="backup.unit_size", value=1, actor=SYSTEM)

    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    workers = [_worker(db, redis_url, namespace, log) for log in logs]
    handle = None
    try:
        for log in logs:
            _wait(lambda log=log: "labkeeper worker ready" in log.read_text(), 30, "a worker", logs)
        # This process only sends work, like a serving labkeeper in Redis mode.
        handle = start_engine(db, Settings(**{**settings.model_dump(), "redis_url": redis_url}))
        with db.scope() as s:
            run_id = service.start_backup(s, actor=SYSTEM).id

        def finished() -> JobLog | None:
            with db.scope(write=False) as s:
                run = s.get(JobLog, run_id)
                return run if run.status not in ("queued", "running") else None

        run = _wait(finished, 60, "the run to finish", logs)
    finally:
        if handle is not None:
            handle.stop()
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in workers]
    assert codes == [0, 0]

    assert (run.status, run.total, run.done, run.changed, run.failed) == (
        "succeeded",
        DEVICES,
        DEVICES,
        DEVICES,
        0,
    )
    entries = device_entries(db, run_id)  # asserts one entry per device
    assert sorted(entries) == sorted(ids)
    by_pid = Counter(int(e.details["worker"].split(":")[1]) for e in entries.values())
    assert set(by_pid) == {p.pid for p in workers}, f"devices per worker: {by_pid}"
    with db.scope(write=False) as s:
        versions = dict(
            s.execute(
                select(ConfigBackup.device_id, func.count()).group_by(ConfigBackup.device_id)
            ).all()
        )
        units = list(s.scalars(select(JobLog).where(JobLog.job_type == "backups.unit")))
    assert versions == dict.fromkeys(ids, 1)
    assert len(units) == DEVICES
    assert all(u.status == "succeeded" and u.attempts == 1 for u in units)
    assert sorted(d for u in units for d in u.params["device_ids"]) == sorted(ids)
