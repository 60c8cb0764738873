"""The jobs engine: runs a queued run (`run_job`), hands runs to workers, fires periodic tasks.

- In-process mode (default): a thread pool inside `labkeeper serve` executes runs.
- Redis mode (`LABKEEPER_REDIS_URL`): runs go to Dramatiq over Redis and `labkeeper worker`
  processes execute them; the serving process only enqueues and runs the scheduler loop.
- The scheduler loop holds the `scheduler` lease row; only the holder fires due periodic
  tasks, and each firing is a compare-and-set on `periodic_tasks.next_run_at`, so a due time
  is fired once even if two processes ever believed they held the lease.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import traceback
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from uuid import uuid4

from sqlalchemy.exc import IntegrityError, OperationalError

import labkeeper.models  # noqa: F401  (every table: foreign keys resolve in worker processes)
from labkeeper.config import Settings, get_settings
from labkeeper.core.db import Database, is_deadlock
from labkeeper.core.observability import (
    JOB_SECONDS,
    JOBS,
    JOBS_DISPATCHED,
    JOBS_RUNNING,
    SCHEDULER_LEADER,
)
from labkeeper.core.time import utcnow
from labkeeper.jobs import registry, repository, service
from labkeeper.jobs.context import JobCancelled, TaskContext, active, ensure_heartbeat, host_name
from labkeeper.jobs.context import worker_id as current_worker_id

if TYPE_CHECKING:
    from dramatiq import Actor
    from dramatiq.brokers.redis import RedisBroker
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
LEASE_SECONDS = 15.0
QUEUE_NAME = "labkeeper_jobs"
ACTOR_NAME = "labkeeper_run_job"
# Prefix of every Redis key Dramatiq uses; separate labs (or test runs) sharing one Redis.
NAMESPACE_ENV = "LABKEEPER_JOBS_NAMESPACE"
FINAL = ("succeeded", "partial", "failed", "cancelled")


# -- running one run ------------------------------------------------------------------------


Outcome = tuple[str, str | None, dict[str, Any] | None]


def _jsonable(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        value = {"value": value}
    result: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return result


def _outcome(ctx: TaskContext, returned: Any) -> Outcome:
    result = _jsonable(returned)
    counters = ctx.counters
    status: str | None = None
    message: str | None = None
    if isinstance(returned, dict):
        if returned.get("status") in FINAL:
            status = str(returned["status"])
        if returned.get("message"):
            message = str(returned["message"])
    if ctx.cancel_seen and status in (None, "succeeded", "partial"):
        status = "cancelled"
        message = message or f"cancelled on request after {counters.done} of {counters.total}"
    if status is None:
        if counters.failed > 0 and counters.done > counters.failed:
            status = "partial"
            message = message or f"{counters.failed} of {counters.done} failed"
        elif counters.failed > 0:
            status = "failed"
            message = message or f"all {counters.failed} failed"
        else:
            status = "succeeded"
    return status, message, result


def _execute(ctx: TaskContext, params: dict[str, Any]) -> Outcome:
    definition = registry.get_task(ctx.job_type)
    if definition is None:
        message = f"no task called {ctx.job_type!r} is registered in this process"
        ctx.log("error", message, category="engine")
        return "failed", message, None
    try:
        return _outcome(ctx, definition.fn(ctx, **params))
    except JobCancelled as exc:
        counters = ctx.counters
        return "cancelled", f"{exc} after {counters.done} of {counters.total}", None
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"[:4000]
        ctx.log(
            "error",
            message,
            category="exception",
            details={"traceback": traceback.format_exc()[-20_000:]},
        )
        return "failed", message, None


def run_job(db: Database, job_log_id: int) -> str | None:
    """Run one queued run in this thread; its final status, or None if it was not ours to run."""
    worker = current_worker_id()
    with db.scope() as s:
        run = service.claim_run(s, job_log_id=job_log_id, worker=worker)
        if run is None:
            return None
        job_type, params = run.job_type, dict(run.params or {})
    ctx = TaskContext(db, job_log_id, job_type=job_type, worker=worker, params=params)
    started = time.perf_counter()
    status: str = "failed"
    message: str | None = "interrupted"
    result: dict[str, Any] | None = None
    JOBS_RUNNING.inc()
    try:
        with active(ctx):
            try:
                status, message, result = _execute(ctx, params)
            except BaseException as exc:  # SystemExit and the like: record, then let it go on
                status, message = "failed", f"interrupted: {type(exc).__name__}"
                raise
            finally:
                _finish(ctx, status, message, result)
    finally:
        JOBS_RUNNING.dec()
        JOBS.labels(job_type, status).inc()
        JOB_SECONDS.labels(job_type).observe(time.perf_counter() - started)
    return status


def _finish(
    ctx: TaskContext, status: str, message: str | None, result: dict[str, Any] | None
) -> None:
    ctx.flush()
    try:
        with ctx.db.scope() as s:
            done = service.finish_run(
                s,
                job_log_id=ctx.job_log_id,
                worker=ctx.worker,
                status=status,
                message=message,
                result=result,
                counters=ctx.counters.as_dict(),
            )
    except Exception:
        # The reaper will mark it failed once its heartbeat goes stale.
        log.exception("could not record the end of job %s (%s)", ctx.job_log_id, status)
        return
    if not done:
        log.warning(
            "job %s ended %s but was no longer ours (reaped meanwhile?)", ctx.job_log_id, status
        )


# -- dispatch -------------------------------------------------------------------------------


class Dispatcher(Protocol):
    """Hands a committed run's id to something that will execute it."""

    def dispatch(self, job_log_id: int) -> None: ...

    def close(self, timeout: float) -> None: ...


class ThreadDispatcher:
    """Runs on threads of this process (the default: `labkeeper serve` does everything).

    Daemon threads: a stopping server waits `close(timeout)` for running tasks, not for a
    half-hour backup; a run cut short is left `running` and the reaper marks it failed.
    """

    def __init__(self, db: Database, threads: int) -> None:
        self.db = db
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting: set[int] = set()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"labkeeper-job-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def dispatch(self, job_log_id: int) -> None:
        """Queue a run on the threads (once: a run already waiting here is not queued again)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine is stopping")
            if job_log_id in self._waiting:
                return
            self._waiting.add(job_log_id)
        self._queue.put(job_log_id)

    def _loop(self) -> None:
        while True:
            job_log_id = self._queue.get()
            if job_log_id is None:
                return
            with self._lock:
                self._waiting.discard(job_log_id)
                if self._closed:
                    continue  # not started: it stays queued for the next start or the reaper
            try:
                run_job(self.db, job_log_id)
            except Exception:
                log.exception("job %s could not be run", job_log_id)

    def close(self, timeout: float) -> None:
        """Start nothing more (waiting runs stay queued); wait a while for running ones."""
        with self._lock:
            self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def namespace(settings: Settings) -> str:
    """The Redis key prefix of the job queue."""
    return str(
        getattr(settings, "jobs_namespace", None) or os.environ.get(NAMESPACE_ENV) or "labkeeper"
    )


def make_broker(settings: Settings) -> RedisBroker:
    """A Dramatiq broker on the configured Redis (no time limit: tasks govern their own)."""
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import AgeLimit, Retries

    # Retries cover a database that is briefly away when a message arrives; the reaper
    # re-dispatches anything that is still queued later.
    middleware = [AgeLimit(), Retries(max_retries=3, min_backoff=1_000, max_backoff=30_000)]
    return RedisBroker(url=settings.redis_url, namespace=namespace(settings), middleware=middleware)


def declare_actor(broker: RedisBroker, db: Database | None) -> Actor[Any, Any]:
    """The one actor: it takes a run's id and runs it on `db` (None in processes that only send)."""
    import dramatiq

    def labkeeper_run_job(job_log_id: int) -> None:
        if db is None:
            raise RuntimeError("this process only sends jobs; run `labkeeper worker`")
        run_job(db, int(job_log_id))

    return dramatiq.Actor(
        labkeeper_run_job,
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=QUEUE_NAME,
        priority=0,
        options={},
    )


class RedisDispatcher:
    """Sends runs to Dramatiq over Redis; `labkeeper worker` processes execute them."""

    def __init__(
        self,
        settings: Settings,
        *,
        broker: RedisBroker | None = None,
        actor: Actor[Any, Any] | None = None,
    ) -> None:
        self.broker = broker or make_broker(settings)
        self.actor = actor or declare_actor(self.broker, None)
        self._owns_broker = broker is None

    def dispatch(self, job_log_id: int) -> None:
        """Send a message carrying the run's id."""
        self.actor.send(job_log_id)

    def close(self, timeout: float) -> None:
        """Close the Redis connections (if this dispatcher opened them)."""
        if self._owns_broker:
            self.broker.close()


_dispatcher: Dispatcher | None = None
_fallback: Dispatcher | None = None
_dispatch_lock = threading.Lock()


def set_dispatcher(dispatcher: Dispatcher | None) -> Dispatcher | None:
    """Make `dispatcher` this process's way of dispatching runs; returns the previous one."""
    global _dispatcher
    with _dispatch_lock:
        previous, _dispatcher = _dispatcher, dispatcher
    return previous


def _fallback_dispatcher() -> Dispatcher | None:
    # A process without an engine (the CLI, a script) can still send to Redis; without Redis
    # the run stays queued until the reaper of a serving process dispatches it.
    global _fallback
    with _dispatch_lock:
        if _fallback is None:
            settings = get_settings()
            if settings.redis_url:
                _fallback = RedisDispatcher(settings)
        return _fallback


def dispatch(job_log_id: int) -> None:
    """Hand a committed run to a worker; failures only log (the reaper dispatches it later)."""
    dispatcher = _dispatcher or _fallback_dispatcher()
    if dispatcher is None:
        log.info(
            "job %s stays queued: no worker in this process; a serving labkeeper's "
            "reaper will dispatch it",
            job_log_id,
        )
        return
    try:
        dispatcher.dispatch(job_log_id)
    except Exception:
        log.warning(
            "could not dispatch job %s; it stays queued for the reaper", job_log_id, exc_info=True
        )
        return
    JOBS_DISPATCHED.inc()


# -- the scheduler loop ---------------------------------------------------------------------


class Scheduler:
    """Every tick: take or renew the lease; the holder fires due periodic tasks and the hooks."""

    def __init__(self, db: Database, *, tick: float, lease_seconds: float | None = None) -> None:
        self.db = db
        self.tick_seconds = tick
        self.lease_seconds = lease_seconds or max(LEASE_SECONDS, 3 * tick)
        self.holder = f"{host_name()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.is_holder = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="labkeeper-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the loop and give the lease up, so another process takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.is_holder:
            try:
                with self.db.scope() as s:
                    service.release_lease(s, name=LEASE_NAME, holder=self.holder)
            except Exception:
                log.warning("could not release the scheduler lease", exc_info=True)
            self.is_holder = False
            SCHEDULER_LEADER.set(0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            self._stop.wait(max(0.0, self.tick_seconds - (time.monotonic() - began)))

    def tick(self, now: datetime | None = None) -> bool:
        """One pass; whether this process held the lease."""
        now = now or utcnow()
        held = self.acquire(now)
        if held != self.is_holder:
            log.info("scheduler lease %s by %s", "taken" if held else "lost", self.holder)
        self.is_holder = held
        SCHEDULER_LEADER.set(1 if held else 0)
        if not held:
            return False
        self.fire_due(now)
        self.run_hooks(now)
        return True

    def acquire(self, now: datetime) -> bool:
        """Renew the lease, take it over when expired, or create it (racing safely)."""
        with self.db.scope() as s:
            if service.renew_lease(
                s, name=LEASE_NAME, holder=self.holder, seconds=self.lease_seconds, now=now
            ):
                return True
            exists = repository.lease(s, LEASE_NAME) is not None
        if exists:
            return False
        try:
            with self.db.scope() as s:
                service.create_lease(
                    s, name=LEASE_NAME, holder=self.holder, seconds=self.lease_seconds, now=now
                )
        except IntegrityError:
            return False  # another process inserted it first
        except OperationalError as exc:
            if is_deadlock(exc):
                return False
            raise
        return True

    def fire_due(self, now: datetime) -> list[int]:
        """Queue every periodic task that is due; returns the new runs' ids."""
        registry.ensure_loaded()
        plan: list[tuple[str, timedelta, bool, bool]] = []
        with self.db.scope(write=False) as s:
            states = repository.periodic_states(s)
            for name, definition in list(registry.PERIODIC.items()):
                try:
                    every = definition.interval(s)
                except Exception:
                    log.exception("interval of periodic task %s could not be read", name)
                    continue
                state = states.get(name)
                if state is not None and not service.is_due(
                    state.next_run_at, now=now, every=every
                ):
                    continue
                idle = definition.when is not None and not self._has_work(s, definition, now)
                plan.append((name, every, state is None, idle))
        fired = []
        for name, every, missing, idle in plan:
            if missing and not self._create_state(name, now):
                continue
            if idle:
                continue
            try:
                with self.db.scope() as s:
                    run = service.fire_periodic(
                        s, name=name, every=every, holder=self.holder, now=now
                    )
                    run_id = run.id if run else None
            except Exception:
                log.exception("periodic task %s could not be queued", name)
                continue
            if run_id is not None:
                fired.append(run_id)
        return fired

    @staticmethod
    def _has_work(session: Session, definition: registry.PeriodicDef, now: datetime) -> bool:
        assert definition.when is not None
        try:
            return bool(definition.when(session, now))
        except Exception:
            log.exception("could not tell whether periodic task %s has work", definition.name)
            return True  # run it: the task itself reports what is wrong

    def _create_state(self, name: str, now: datetime) -> bool:
        try:
            with self.db.scope() as s:
                service.ensure_periodic_state(s, name=name, first_run_at=now)
        except IntegrityError:
            pass  # created by another process meanwhile: fire_periodic reads it
        except OperationalError as exc:
            if not is_deadlock(exc):
                raise
            return False
        return True

    def run_hooks(self, now: datetime) -> None:
        """Call every scheduler hook, each in its own transaction."""
        for hook in list(registry.scheduler_hooks):
            try:
                with self.db.scope() as s:
                    hook(s, now)
            except Exception:
                log.exception("scheduler hook %s failed", getattr(hook, "__qualname__", hook))


# -- starting and stopping ------------------------------------------------------------------


class EngineHandle:
    """What `start_engine` started; `stop()` ends it (idempotent)."""

    def __init__(self, dispatcher: Dispatcher, scheduler: Scheduler | None) -> None:
        self.dispatcher = dispatcher
        self.scheduler = scheduler
        self._stopped = False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the scheduler (releasing its lease) and the workers of this process."""
        if self._stopped:
            return
        self._stopped = True
        if self.scheduler is not None:
            self.scheduler.stop(timeout)
        with _dispatch_lock:
            global _dispatcher
            if _dispatcher is self.dispatcher:
                _dispatcher = None
        self.dispatcher.close(timeout)


def start_engine(database: Database, settings: Settings) -> EngineHandle:
    """Start background work in a serving process: dispatching runs and the scheduler loop."""
    registry.load_all()
    dispatcher: Dispatcher
    if settings.redis_url:
        dispatcher = RedisDispatcher(settings)
    else:
        dispatcher = ThreadDispatcher(database, settings.worker_threads)
        ensure_heartbeat()
    set_dispatcher(dispatcher)
    if not settings.redis_url:
        # Runs queued while no worker was up (a restart, the CLI) start now, not at the next reap.
        try:
            with database.scope(write=False) as s:
                leftover = repository.queued_ids(s)
            for run_id in leftover:
                dispatch(run_id)
        except Exception:
            log.warning("could not look for queued jobs at start", exc_info=True)
    scheduler = None
    if settings.run_scheduler:
        scheduler = Scheduler(database, tick=settings.scheduler_tick_seconds)
        scheduler.start()
    log.info(
        "jobs engine started (%s, scheduler %s)",
        "redis" if settings.redis_url else f"{settings.worker_threads} threads",
        "on" if scheduler else "off",
    )
    return EngineHandle(dispatcher, scheduler)
