"""Real processes: two schedulers on one database, and Redis workers sharing the work."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import func, select

from labkeeper.config import Settings
from labkeeper.core.db import Database
from labkeeper.jobs import service
from labkeeper.jobs.engine import LEASE_NAME, QUEUE_NAME, dispatch, start_engine
from labkeeper.jobs.models import JobLog, JobLogEntry, Lease
from tests.jobs.sample_tasks import TICK_EVERY

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]


def _env(db: Database, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKEEPER_")}
    env.update(
        {
            "LABKEEPER_ENV": "test",
            "LABKEEPER_SECRET_KEYS": os.environ["LABKEEPER_SECRET_KEYS"],
            "LABKEEPER_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
            "LABKEEPER_JOBS_MODULES": "tests.jobs.sample_tasks",
            "LABKEEPER_LOG_LEVEL": "INFO",
            **extra,
        }
    )
    return env


class Proc:
    """A child process whose stderr goes to a file we can wait on."""

    def __init__(self, module: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.terminated = False
        self._out = log.open("w")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", *module],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._out,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for_text(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert self.popen.poll() is None, f"process died:\n{self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r}:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.05)

    def terminate(self) -> None:
        if self.popen.poll() is None and not self.terminated:
            self.terminated = True
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20) -> int:
        self.terminate()
        try:
            return self.popen.wait(timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._out.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _fired(db: Database) -> list[tuple[datetime, str, int, datetime]]:
    """(due time, holder, run id, queued at) of every test.tick run the scheduler fired."""
    with db.scope(write=False) as s:
        rows = s.execute(
            select(JobLogEntry.details, JobLog.id, JobLog.queued_at)
            .join(JobLog, JobLog.id == JobLogEntry.job_log_id)
            .where(JobLog.job_type == "test.tick", JobLogEntry.category == "scheduler")
        ).all()
    return sorted((datetime.fromisoformat(d["due"]), d["holder"], i, q) for d, i, q in rows)


def test_two_serving_processes_fire_each_periodic_run_exactly_once(db, tmp_path, procs):
    """Two engines with schedulers share a database; the lease holder fires, then hands over.

    Every test.tick run records the due time it was fired for and who fired it. "Never twice"
    means: no due time appears twice, due times advance by exactly one interval, the holders
    never interleave (only the lease holder fires), and the number of runs matches the number
    of intervals that passed.
    """
    env = _env(
        db,
        LABKEEPER_RUN_SCHEDULER="true",
        LABKEEPER_SCHEDULER_TICK_SECONDS="0.2",
        LABKEEPER_WORKER_THREADS="2",
    )
    for n in range(2):
        procs.append(Proc(["tests.jobs.engine_proc"], env, tmp_path / f"engine{n}.log"))
    for p in procs:
        p.wait_for_text("engine ready")
    _until(lambda: len(_fired(db)) >= 3, 30, "three runs from the first holder")
    with db.scope(write=False) as s:
        first_holder = s.get(Lease, LEASE_NAME).holder
    first = next(p for p in procs if p.pid == int(first_holder.split(":")[1]))
    second = next(p for p in procs if p is not first)
    assert first.stop() == 0  # releases the lease on the way out
    _until(
        lambda: sum(h != first_holder for _, h, _, _ in _fired(db)) >= 3,
        30,
        "three runs from the second holder",
    )
    stopped_at = time.time()
    assert second.stop() == 0

    fired = _fired(db)
    dues = [due for due, _, _, _ in fired]
    assert len(set(dues)) == len(dues), "a due time was fired twice"
    steps = [(b - a) / TICK_EVERY for a, b in itertools.pairwise(dues)]
    assert all(step == int(step) and step >= 1 for step in steps), steps
    assert sum(step - 1 for step in steps) <= 1, f"periods skipped: {steps}"
    holders = [h for _, h, _, _ in fired]
    assert holders[0] == first_holder and len(set(holders)) == 2
    switch = holders.index(next(h for h in holders if h != first_holder))
    assert set(holders[switch:]) == {holders[-1]}, "holders interleaved: two processes fired"
    # As many runs as due times passed between the first one and the last stop (one fewer
    # when the handover skipped a period).
    periods = int((stopped_at - dues[0].timestamp()) / TICK_EVERY.total_seconds())
    assert periods - 1 <= len(fired) <= periods + 1, (len(fired), periods)
    with db.scope(write=False) as s:
        runs = list(s.scalars(select(JobLog).where(JobLog.id.in_([i for _, _, i, _ in fired]))))
    assert {r.status for r in runs} <= {"succeeded", "queued"}  # queued: fired as one stopped
    assert all(r.attempts == 1 for r in runs if r.status == "succeeded")
    assert sum(r.status == "queued" for r in runs) <= 2


def test_redis_workers_share_the_work_and_run_each_once(
    db, settings, redis_url, tmp_path, procs, monkeypatch
):
    import redis

    namespace = f"lktest-{uuid4().hex[:10]}"  # parallel test runs never see each other's queue
    monkeypatch.setenv("LABKEEPER_JOBS_NAMESPACE", namespace)
    env = _env(db, LABKEEPER_REDIS_URL=redis_url, LABKEEPER_JOBS_NAMESPACE=namespace)
    for n in range(2):
        procs.append(
            Proc(["labkeeper.jobs.worker", "--threads", "2"], env, tmp_path / f"worker{n}.log")
        )
    for p in procs:
        p.wait_for_text("labkeeper worker ready")
    # The serving process in Redis mode only sends.
    handle = start_engine(db, Settings(**{**settings.model_dump(), "redis_url": redis_url}))
    client = redis.Redis.from_url(redis_url)
    try:
        with db.scope() as s:
            ids = [
                service.enqueue(s, "test.echo", params={"value": i, "sleep": 0.1}).id
                for i in range(24)
            ]

        def all_done() -> bool:
            with db.scope(write=False) as s:
                left = s.scalar(
                    select(func.count())
                    .select_from(JobLog)
                    .where(JobLog.id.in_(ids), JobLog.status != "succeeded")
                )
            return left == 0

        _until(all_done, 30, "the workers to run every job")
        # Duplicate messages (a reaper re-dispatch, a redelivery) must not run anything again.
        for run_id in ids:
            dispatch(run_id)
        _until(
            lambda: client.hlen(f"{namespace}:{QUEUE_NAME}.msgs") == 0,
            15,
            "the duplicates to be consumed",
        )
    finally:
        handle.stop()
        client.close()
    for p in procs:
        p.terminate()
    assert [p.stop() for p in procs] == [0, 0]

    with db.scope(write=False) as s:
        runs = list(s.scalars(select(JobLog).where(JobLog.id.in_(ids))))
        counts = dict(
            s.execute(
                select(JobLogEntry.job_log_id, func.count())
                .where(JobLogEntry.job_log_id.in_(ids))
                .group_by(JobLogEntry.job_log_id)
            ).all()
        )
    assert all(r.status == "succeeded" and r.attempts == 1 for r in runs)
    assert all(counts[i] == 1 for i in ids)  # each ran exactly once: one "echo 0" line
    pids = {int((r.worker or "").split(":")[1]) for r in runs}
    assert pids == {p.pid for p in procs}, "both workers take part, nobody else runs jobs"
