"""What a running task sees (`TaskContext`) and the heartbeat of the runs a process executes.

Entries and counters are buffered and written in short transactions of their own, so a task
that logs per device does not turn every line into a round trip, and nothing a task logs is
lost when its own work rolls back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from labkeeper.core.db import Database
from labkeeper.core.time import utcnow
from labkeeper.jobs.models import JobLog, JobLogEntry

log = logging.getLogger(__name__)

LEVELS = ("debug", "info", "warning", "error")
COUNTERS = ("total", "done", "changed", "unchanged", "failed")
# A buffer is written when it holds this many entries or is this old.
FLUSH_ENTRIES = 100
FLUSH_SECONDS = 0.5
# How often running runs prove they are alive; the reaper presumes dead after many misses.
HEARTBEAT_SECONDS = 5.0
# How long a "cancel requested?" answer is reused (tasks may ask once per device).
CANCEL_POLL_SECONDS = 0.5
# Entries kept in memory while the database cannot take them; older ones are dropped.
MAX_PENDING = 10_000


class JobCancelled(Exception):
    """Raised by a task (`ctx.raise_if_cancelled()`) to stop because a cancel was requested."""


def host_name() -> str:
    """This machine's name as recorded in `job_logs.worker`."""
    return socket.gethostname()[:60]


def worker_id() -> str:
    """Who runs a job: `host:pid:thread`."""
    return f"{host_name()}:{os.getpid()}:{threading.get_native_id()}"[:100]


@dataclass
class Counters:
    """The progress counters of one run."""

    total: int = 0
    done: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by column name."""
        return {name: getattr(self, name) for name in COUNTERS}


class TaskContext:
    """Handed to every task: its run id, the database, logging, progress and cancellation."""

    def __init__(
        self,
        db: Database,
        job_log_id: int,
        *,
        job_type: str,
        worker: str,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.db = db
        self.job_log_id = job_log_id
        self.job_type = job_type
        self.worker = worker
        self.params = dict(params or {})
        self._counters = Counters()
        self._counters_dirty = False
        self._entries: list[dict[str, Any]] = []
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._cancel_seen = False
        self._cancel_checked = 0.0

    # -- logging --------------------------------------------------------------------------

    def log(
        self,
        level: str,
        message: str,
        *,
        category: str | None = None,
        device_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Add an entry to the run's log (written within half a second)."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        entry = {
            "job_log_id": self.job_log_id,
            "created_at": utcnow(),
            "level": level,
            "category": category[:50] if category else None,
            "device_id": device_id,
            "message": str(message),
            "details": details,
        }
        with self._buffer_lock:
            self._entries.append(entry)
            due = len(self._entries) >= FLUSH_ENTRIES
        if due or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def info(self, message: str, **kwargs: Any) -> None:
        """`log("info", ...)`."""
        self.log("info", message, **kwargs)

    def warning(self, message: str, **kwargs: Any) -> None:
        """`log("warning", ...)`."""
        self.log("warning", message, **kwargs)

    def error(self, message: str, **kwargs: Any) -> None:
        """`log("error", ...)`."""
        self.log("error", message, **kwargs)

    # -- progress -------------------------------------------------------------------------

    def progress(
        self,
        *,
        total: int | None = None,
        done: int | None = None,
        changed: int | None = None,
        unchanged: int | None = None,
        failed: int | None = None,
    ) -> None:
        """Set progress counters to these values (the others keep theirs)."""
        values = {
            "total": total,
            "done": done,
            "changed": changed,
            "unchanged": unchanged,
            "failed": failed,
        }
        with self._buffer_lock:
            for name, value in values.items():
                if value is not None:
                    setattr(self._counters, name, int(value))
            self._counters_dirty = True
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def advance(
        self, *, done: int = 0, changed: int = 0, unchanged: int = 0, failed: int = 0
    ) -> None:
        """Add to progress counters (safe from many threads of one task)."""
        with self._buffer_lock:
            self._counters.done += done
            self._counters.changed += changed
            self._counters.unchanged += unchanged
            self._counters.failed += failed
            self._counters_dirty = True
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    @property
    def counters(self) -> Counters:
        """A copy of the current counters."""
        with self._buffer_lock:
            return Counters(**self._counters.as_dict())

    # -- cancellation and liveness ---------------------------------------------------------

    def cancelled(self) -> bool:
        """Whether someone asked this run to stop (tasks should check between steps)."""
        if self._cancel_seen:
            return True
        now = time.monotonic()
        if now - self._cancel_checked < CANCEL_POLL_SECONDS:
            return False
        self._cancel_checked = now
        try:
            with self.db.scope(write=False) as s:
                flag = s.scalar(select(JobLog.cancel_requested).where(JobLog.id == self.job_log_id))
        except SQLAlchemyError:
            log.warning("could not read the cancel flag of job %s", self.job_log_id)
            return False
        self._cancel_seen = bool(flag)
        return self._cancel_seen

    @property
    def cancel_seen(self) -> bool:
        """Whether `cancelled()` has answered yes during this run."""
        return self._cancel_seen

    def raise_if_cancelled(self) -> None:
        """Raise JobCancelled when a cancel was requested."""
        if self.cancelled():
            raise JobCancelled("cancelled on request")

    def heartbeat(self) -> None:
        """Tell the reaper this run is alive (the engine also does this every few seconds)."""
        with self.db.scope() as s:
            s.execute(
                update(JobLog).where(JobLog.id == self.job_log_id).values(heartbeat_at=utcnow()),
                execution_options={"synchronize_session": False},
            )

    # -- writing --------------------------------------------------------------------------

    def flush(self) -> None:
        """Write buffered entries and changed counters now."""
        with self._flush_lock:
            with self._buffer_lock:
                entries, self._entries = self._entries, []
                counters = self._counters.as_dict() if self._counters_dirty else None
                self._counters_dirty = False
            self._last_flush = time.monotonic()
            if not entries and counters is None:
                return
            try:
                with self.db.scope() as s:
                    if entries:
                        s.execute(insert(JobLogEntry), entries)
                    if counters is not None:
                        s.execute(
                            update(JobLog).where(JobLog.id == self.job_log_id).values(**counters),
                            execution_options={"synchronize_session": False},
                        )
            except SQLAlchemyError:
                log.warning(
                    "could not write the log of job %s; will retry", self.job_log_id, exc_info=True
                )
                with self._buffer_lock:
                    self._entries[:0] = entries[-MAX_PENDING:]
                    del self._entries[MAX_PENDING:]
                    self._counters_dirty = self._counters_dirty or counters is not None

    def pending(self) -> bool:
        """Whether something is waiting to be written."""
        with self._buffer_lock:
            return bool(self._entries) or self._counters_dirty


# -- the runs this process executes, and their heartbeat -----------------------------------

_active: dict[int, TaskContext] = {}
_active_lock = threading.Lock()
_heartbeat_thread: threading.Thread | None = None


@contextmanager
def active(ctx: TaskContext) -> Iterator[None]:
    """Register a run as executing in this process while the block runs."""
    ensure_heartbeat()
    with _active_lock:
        _active[ctx.job_log_id] = ctx
    try:
        yield
    finally:
        with _active_lock:
            _active.pop(ctx.job_log_id, None)


def active_ids() -> list[int]:
    """Ids of the runs executing in this process."""
    with _active_lock:
        return sorted(_active)


def beat(now: datetime | None = None) -> None:
    """Bump heartbeat_at of every run this process executes (one UPDATE per database)."""
    with _active_lock:
        contexts = list(_active.values())
    by_db: dict[int, tuple[Database, list[int]]] = {}
    for ctx in contexts:
        by_db.setdefault(id(ctx.db), (ctx.db, []))[1].append(ctx.job_log_id)
    stamp = now or utcnow()
    for db, ids in by_db.values():
        try:
            with db.scope() as s:
                s.execute(
                    update(JobLog)
                    .where(JobLog.id.in_(ids), JobLog.status == "running")
                    .values(heartbeat_at=stamp),
                    execution_options={"synchronize_session": False},
                )
        except SQLAlchemyError:
            log.warning("heartbeat of jobs %s failed", ids, exc_info=True)


def _heartbeat_loop() -> None:
    last_beat = time.monotonic()
    while True:
        time.sleep(FLUSH_SECONDS)
        try:
            with _active_lock:
                contexts = list(_active.values())
            for ctx in contexts:
                if ctx.pending():
                    ctx.flush()
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                last_beat = time.monotonic()
                beat()
        except Exception:  # the heartbeat must outlive any one failure
            log.exception("job heartbeat failed")


def ensure_heartbeat() -> None:
    """Start this process's heartbeat thread once (it idles while nothing runs)."""
    global _heartbeat_thread
    with _active_lock:
        if _heartbeat_thread is not None and _heartbeat_thread.is_alive():
            return
        _heartbeat_thread = threading.Thread(
            target=_heartbeat_loop, name="labkeeper-job-heartbeat", daemon=True
        )
        _heartbeat_thread.start()
