"""The engine in one process: enqueue after commit, outcomes, cancel, reaper, lease, CAS."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from labkeeper.admin import service as settings_service
from labkeeper.config import Settings
from labkeeper.core.audit import SYSTEM
from labkeeper.core.errors import NotFound
from labkeeper.core.time import utcnow
from labkeeper.jobs import registry, service
from labkeeper.jobs.context import TaskContext, host_name
from labkeeper.jobs.engine import LEASE_NAME, Scheduler, run_job, start_engine
from labkeeper.jobs.models import JobLog, JobLogEntry, Lease, PeriodicTaskState
from tests.jobs.conftest import dispatched, entries, run_row, wait_for
from tests.jobs.sample_tasks import TICK_EVERY


def _enqueue(db, name, **params):
    with db.scope() as s:
        return service.enqueue(s, name, params=params).id


def test_rollback_dispatches_nothing_and_commit_runs(db, engine):
    before = dispatched()
    with pytest.raises(RuntimeError), db.scope() as s:
        service.enqueue(s, "test.echo", params={"value": 1})
        raise RuntimeError("the caller's transaction fails")
    assert dispatched() == before
    with db.scope(write=False) as s:
        assert s.scalar(select(func.count()).select_from(JobLog)) == 0

    with db.scope() as s:
        run = service.enqueue(s, "test.echo", params={"value": 42, "entries": 3})
        assert run.status == "queued"
        assert dispatched() == before  # not before the commit
    assert dispatched() == before + 1
    done = wait_for(db, run.id)
    assert done.status == "succeeded", done.message
    assert done.result is not None and done.result["value"] == 42
    assert done.attempts == 1 and done.worker and done.worker.startswith(host_name() + ":")
    assert done.started_at and done.finished_at and done.finished_at >= done.started_at
    assert (done.total, done.done, done.changed) == (1, 1, 1)
    assert [e.message for e in entries(db, run.id)] == ["echo 0", "echo 1", "echo 2"]


def test_unknown_task_is_refused(db):
    with pytest.raises(NotFound) as exc, db.scope() as s:
        service.enqueue(s, "no.such.task", params={})
    assert exc.value.code == "unknown_task"


def test_failing_task_ends_failed_with_message_and_traceback(db, engine):
    run_id = _enqueue(db, "test.fail", message="the switch said no")
    done = wait_for(db, run_id)
    assert done.status == "failed"
    assert done.message == "RuntimeError: the switch said no"
    errors = [e for e in entries(db, run_id) if e.level == "error"]
    assert errors and errors[0].category == "exception"
    assert "Traceback" in errors[0].details["traceback"]


def test_wrong_parameters_fail_the_run(db, engine):
    run_id = _enqueue(db, "test.echo", nonsense=1)
    done = wait_for(db, run_id)
    assert done.status == "failed" and "nonsense" in (done.message or "")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"total": 4, "failed": 1}, "1 of 4 failed"),
        ({"explicit": True}, "said so"),
    ],
)
def test_partial(db, engine, params, message):
    done = wait_for(db, _enqueue(db, "test.partial", **params))
    assert done.status == "partial"
    assert done.message == message


def test_all_items_failing_is_a_failure(db, engine):
    done = wait_for(db, _enqueue(db, "test.partial", total=3, failed=3))
    assert done.status == "failed" and done.failed == 3


def test_cancel_a_running_run(db, engine):
    run_id = _enqueue(db, "test.slow", seconds=20)
    wait_for(db, run_id, statuses=("running",))
    with db.scope() as s:
        row = service.cancel(s, job_log_id=run_id, actor=SYSTEM)
        assert row.status == "running" and row.cancel_requested
    done = wait_for(db, run_id, timeout=5)
    assert done.status == "cancelled"
    assert done.done < done.total
    assert any(e.message == "stopping on request" for e in entries(db, run_id))


def test_cancel_a_queued_run_and_a_finished_one(db):
    run_id = _enqueue(db, "test.echo")  # no engine: it stays queued
    with db.scope() as s:
        assert service.cancel(s, job_log_id=run_id, actor=SYSTEM).status == "cancelled"
    assert run_job(db, run_id) is None  # a cancelled run is never started
    from labkeeper.core.errors import InvalidTransition

    with pytest.raises(InvalidTransition), db.scope() as s:
        service.cancel(s, job_log_id=run_id, actor=SYSTEM)


def test_a_run_is_claimed_once(db):
    run_id = _enqueue(db, "test.echo", sleep=0.2)
    results: list[str | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(run_job(db, run_id))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("succeeded") == 1 and results.count(None) == 3
    assert run_row(db, run_id).attempts == 1


def test_context_batches_entries_and_counters(db):
    run_id = _enqueue(db, "test.echo")
    with db.scope() as s:
        service.claim_run(s, job_log_id=run_id, worker="w:1:1")
    ctx = TaskContext(db, run_id, job_type="test.echo", worker="w:1:1")

    def log_many(n: int) -> None:
        for i in range(150):
            ctx.log("info", f"t{n} {i}")
            ctx.advance(done=1)

    threads = [threading.Thread(target=log_many, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctx.flush()
    rows = entries(db, run_id)
    assert len(rows) == 600
    for n in range(4):  # each thread's lines stay in order
        mine = [int(r.message.split()[1]) for r in rows if r.message.startswith(f"t{n} ")]
        assert mine == list(range(150))
    assert run_row(db, run_id).done == 600
    with pytest.raises(ValueError):
        ctx.log("loud", "no such level")


# -- the reaper ---------------------------------------------------------------------------


def _running(db, *, worker: str, beat_age: timedelta) -> int:
    now = utcnow()
    with db.scope() as s:
        row = JobLog(
            job_type="test.echo",
            status="running",
            params={},
            worker=worker,
            queued_at=now - beat_age,
            started_at=now - beat_age,
            heartbeat_at=now - beat_age,
        )
        s.add(row)
        s.flush()
        return row.id


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_reaper_fails_stale_and_orphaned_runs(db):
    stale = _running(db, worker="elsewhere:123:4", beat_age=timedelta(minutes=10))
    alive = _running(db, worker="elsewhere:124:4", beat_age=timedelta(seconds=2))
    orphan = _running(db, worker=f"{host_name()}:{_dead_pid()}:7", beat_age=timedelta(seconds=20))
    mine = _running(db, worker=f"{host_name()}:{os.getpid()}:7", beat_age=timedelta(seconds=20))
    reap_id = _enqueue(db, "jobs.reap")
    assert run_job(db, reap_id) == "succeeded"

    row = run_row(db, stale)
    assert row.status == "failed" and "stopped sending heartbeats" in (row.message or "")
    assert row.finished_at is not None
    assert entries(db, stale)[-1].category == "reaper"
    assert "is gone" in (run_row(db, orphan).message or "")
    assert run_row(db, orphan).status == "failed"
    assert run_row(db, alive).status == "running"
    assert run_row(db, mine).status == "running"
    assert run_row(db, reap_id).result == {"failed": 2, "requeued": 0}


def test_reaper_redispatches_runs_nobody_picked_up(db, engine):
    with db.scope() as s:
        row = JobLog(
            job_type="test.echo",
            status="queued",
            params={"value": "late"},
            queued_at=utcnow() - timedelta(minutes=5),
        )
        s.add(row)
        s.flush()
        lost = row.id
    reaped = wait_for(db, _enqueue(db, "jobs.reap"))
    assert reaped.status == "succeeded" and reaped.result == {"failed": 0, "requeued": 1}
    assert wait_for(db, lost).status == "succeeded"


def test_cleanup_deletes_old_runs_only(db):
    now = utcnow()
    with db.scope() as s:
        old = JobLog(
            job_type="test.echo",
            status="succeeded",
            queued_at=now - timedelta(days=100),
            finished_at=now - timedelta(days=100),
        )
        recent = JobLog(
            job_type="test.echo",
            status="failed",
            queued_at=now - timedelta(days=20),
            finished_at=now - timedelta(days=20),
        )
        s.add_all([old, recent])
        s.flush()
        s.add(JobLogEntry(job_log_id=old.id, message="old news"))
        s.add(PeriodicTaskState(name="test.tick", next_run_at=now, last_job_log_id=old.id))
        ids = old.id, recent.id
    assert run_job(db, _enqueue(db, "jobs.cleanup")) == "succeeded"
    with db.scope(write=False) as s:
        assert s.get(JobLog, ids[0]) is None and s.get(JobLog, ids[1]) is not None
        assert (
            s.scalar(
                select(func.count())
                .select_from(JobLogEntry)
                .where(JobLogEntry.job_log_id == ids[0])
            )
            == 0
        )
        assert s.get(PeriodicTaskState, "test.tick").last_job_log_id is None
    with db.scope() as s:
        settings_service.put(s, key="jobs.log_retention_days", value=10, actor=SYSTEM)
    assert run_job(db, _enqueue(db, "jobs.cleanup")) == "succeeded"
    with db.scope(write=False) as s:
        assert s.get(JobLog, ids[1]) is None


# -- lease and periodic firing ------------------------------------------------------------


def test_lease_is_held_by_one_scheduler_at_a_time(db):
    a, b = Scheduler(db, tick=1), Scheduler(db, tick=1)
    now = utcnow()
    results: list[tuple[str, bool]] = []
    barrier = threading.Barrier(2)

    def race(s: Scheduler) -> None:
        barrier.wait()
        results.append((s.holder, s.acquire(now)))

    threads = [threading.Thread(target=race, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(held for _, held in results) == [False, True]  # the insert race has one winner
    first = a if dict(results)[a.holder] else b
    second = b if first is a else a
    assert first.acquire(now + timedelta(seconds=5)) and not second.acquire(
        now + timedelta(seconds=5)
    )
    later = now + timedelta(seconds=5 + first.lease_seconds + 1)  # first stopped renewing
    assert second.acquire(later) and not first.acquire(later)
    second.is_holder = True
    second.stop()  # releases: the other takes over at once
    assert first.acquire(utcnow())
    with db.scope(write=False) as s:
        assert s.get(Lease, LEASE_NAME).holder == first.holder


def test_overlapping_schedulers_fire_each_due_time_once(db):
    """Even two processes that both believe they hold the lease fire a due time only once."""
    schedulers = [Scheduler(db, tick=1), Scheduler(db, tick=1)]
    t0 = utcnow().replace(microsecond=0)
    rounds = 6
    for k in range(rounds):
        now = t0 + k * TICK_EVERY + timedelta(milliseconds=500)
        barrier = threading.Barrier(len(schedulers))

        def fire(s: Scheduler, now=now, barrier=barrier) -> None:
            barrier.wait()
            s.fire_due(now)

        threads = [threading.Thread(target=fire, args=(s,)) for s in schedulers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with db.scope(write=False) as s:
        ticks = list(s.scalars(select(JobLog.id).where(JobLog.job_type == "test.tick")))
        dues = list(
            s.scalars(
                select(JobLogEntry.details).where(
                    JobLogEntry.job_log_id.in_(ticks), JobLogEntry.category == "scheduler"
                )
            )
        )
        per_task = dict(
            s.execute(select(JobLog.job_type, func.count()).group_by(JobLog.job_type)).all()
        )
    assert len(ticks) == rounds
    assert len({d["due"] for d in dues}) == rounds
    # The slower periodic tasks fired once, at their first due time.
    assert per_task["jobs.reap"] == 1 and per_task["jobs.cleanup"] == 1, per_task


def test_scheduler_hooks_run_only_while_holding_the_lease(db):
    calls: list[tuple[str, object]] = []

    def hook(session, now):
        calls.append((session.get_bind().dialect.name, now))

    registry.scheduler_hooks.append(hook)
    try:
        a, b = Scheduler(db, tick=1), Scheduler(db, tick=1)
        now = utcnow()
        assert a.tick(now) is True
        assert b.tick(now) is False
        assert len(calls) == 1 and calls[0][1] == now
    finally:
        registry.scheduler_hooks.remove(hook)


def test_engine_scheduler_loop_fires_and_releases_the_lease(db, settings):
    loop_settings = Settings(
        **{**settings.model_dump(), "run_scheduler": True, "scheduler_tick_seconds": 0.05}
    )
    handle = start_engine(db, loop_settings)
    try:
        deadline = time.monotonic() + 10
        while True:
            with db.scope(write=False) as s:
                done = s.scalar(
                    select(func.count())
                    .select_from(JobLog)
                    .where(JobLog.job_type == "test.tick", JobLog.status == "succeeded")
                )
            if done:
                break
            assert time.monotonic() < deadline, "the scheduler never fired test.tick"
            time.sleep(0.05)
    finally:
        handle.stop()
    with db.scope(write=False) as s:
        assert s.get(Lease, LEASE_NAME).expires_at < utcnow()
        assert s.get(PeriodicTaskState, "test.tick").last_run_at is not None


def test_heartbeat_advances_while_a_run_executes(db, engine, monkeypatch):
    from labkeeper.jobs import context

    monkeypatch.setattr(context, "HEARTBEAT_SECONDS", 0.1)
    run_id = _enqueue(db, "test.slow", seconds=1.0)
    first = wait_for(db, run_id, statuses=("running",)).heartbeat_at
    time.sleep(0.8)
    assert run_row(db, run_id).heartbeat_at > first
    assert wait_for(db, run_id).status == "succeeded"


def test_stopping_leaves_waiting_runs_queued_for_the_next_start(db, settings):
    one_thread = Settings(**{**settings.model_dump(), "worker_threads": 1})
    handle = start_engine(db, one_thread)
    try:
        busy = _enqueue(db, "test.slow", seconds=0.3)
        waiting = [_enqueue(db, "test.echo") for _ in range(2)]
        wait_for(db, busy, statuses=("running",))
    finally:
        handle.stop(timeout=5)
    assert run_row(db, busy).status == "succeeded"  # the running one was let finish
    assert [run_row(db, w).status for w in waiting] == ["queued", "queued"]
    handle = start_engine(db, one_thread)  # a restart picks them up at once
    try:
        assert [wait_for(db, w).status for w in waiting] == ["succeeded", "succeeded"]
    finally:
        handle.stop()


def test_a_shortened_interval_takes_effect_without_waiting_out_the_old_one(db):
    now = utcnow()
    with db.scope() as s:
        s.add(PeriodicTaskState(name="test.tick", next_run_at=now + timedelta(days=1)))
    with db.scope() as s:
        run = service.fire_periodic(
            s, name="test.tick", every=timedelta(seconds=1), holder="h", now=now
        )
        assert run is not None
    with db.scope() as s:
        assert s.get(PeriodicTaskState, "test.tick").next_run_at == now + timedelta(seconds=1)
        assert (
            service.fire_periodic(
                s, name="test.tick", every=timedelta(seconds=1), holder="h", now=now
            )
            is None
        )
