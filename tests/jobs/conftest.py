"""Helpers of the jobs tests: an in-process engine and waiting for runs to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from labkeeper.config import Settings
from labkeeper.core.db import Database
from labkeeper.jobs import repository
from labkeeper.jobs.engine import EngineHandle, start_engine
from labkeeper.jobs.models import JobLog, JobLogEntry
from tests.jobs import sample_tasks  # noqa: F401  (registers the test tasks)


@pytest.fixture
def engine(db: Database, settings: Settings) -> Iterator[EngineHandle]:
    """The in-process engine (thread pool, no scheduler) on the test database."""
    handle = start_engine(db, settings)
    yield handle
    handle.stop()


def run_row(db: Database, job_log_id: int) -> JobLog:
    """A run as stored now."""
    with db.scope(write=False) as s:
        row = s.get(JobLog, job_log_id)
        assert row is not None
        return row


def entries(db: Database, job_log_id: int) -> list[JobLogEntry]:
    """A run's entries, oldest first."""
    with db.scope(write=False) as s:
        return list(
            s.scalars(
                select(JobLogEntry)
                .where(JobLogEntry.job_log_id == job_log_id)
                .order_by(JobLogEntry.id)
            )
        )


def wait_for(
    db: Database, job_log_id: int, statuses: Any = repository.FINISHED, timeout: float = 15.0
) -> JobLog:
    """Poll until a run reaches one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        row = run_row(db, job_log_id)
        if row.status in statuses:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"run {job_log_id} is still {row.status} after {timeout} s")
        time.sleep(0.02)


def dispatched() -> float:
    """How many runs this process has dispatched so far (Prometheus counter)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("labkeeper_jobs_dispatched_total") or 0.0
