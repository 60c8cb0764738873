"""Background work of the configuration keeper: backup runs, retention, scheduled jobs.

A run (`backups.run`) resolves its devices, then either collects them itself or, in Redis mode,
hands them to the workers in units (`backups.unit`, `backup.unit_size` devices each; 1 by
default, so every device is a unit of work) and waits for their results.

Collection runs on one asyncio loop per process (bounded by `backup.concurrency`); results go
through a queue to a writer that stores them in small batches (`BATCH` results or
`FLUSH_SECONDS`, whichever comes first; up to `MAX_BATCH` when the database is behind), each in
a transaction of its own, so a thousand devices store quickly and a crash loses at most one
batch. No database connection is held while the
network is slow. Per-device entries and the run's counters are written with the versions, as
increments, so any number of workers can report into one run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError

from labkeeper.admin import service as settings
from labkeeper.backups import repository, service, storage
from labkeeper.backups.storage import Outcome, Plan
from labkeeper.config import get_settings
from labkeeper.core.db import Database, is_deadlock
from labkeeper.core.time import utcnow
from labkeeper.drivers.base import Result, Target
from labkeeper.drivers.cli import collect_many
from labkeeper.jobs import registry
from labkeeper.jobs import service as jobs
from labkeeper.jobs.context import TaskContext, host_name
from labkeeper.jobs.registry import periodic, task

log = logging.getLogger(__name__)

UNIT_TASK = "backups.unit"
BATCH = 50
MAX_BATCH = 200
FLUSH_SECONDS = 0.5
CANCEL_POLL_SECONDS = 0.5
WRITE_ATTEMPTS = 5
# How long a run waits past its time limit for units still reporting.
GRACE_SECONDS = 10.0
FINISHED = ("succeeded", "partial", "failed", "cancelled")


@dataclass(frozen=True)
class RunConfig:
    """The collection settings of one run, read once at its start."""

    concurrency: int
    timeout: float
    run_timeout: float
    retries: int
    unit_size: int
    backoff: float = 0.5


def run_config(session: Any) -> RunConfig:
    """The backup settings as they are now."""
    return RunConfig(
        concurrency=int(settings.get(session, "backup.concurrency")),
        timeout=float(settings.get(session, "backup.device_timeout_seconds")),
        run_timeout=float(settings.get(session, "backup.run_timeout_seconds")),
        retries=int(settings.get(session, "backup.retries")),
        unit_size=int(settings.get(session, "backup.unit_size")),
    )


def _process() -> str:
    # Which process recorded a result (`host:pid`), shown in each device's entry.
    return f"{host_name()}:{os.getpid()}"


def write(
    db: Database,
    *,
    job_log_id: int,
    outcomes: Sequence[Outcome],
    automatic: bool,
    worker: str | None = None,
) -> dict[str, int]:
    """Store one batch of results in a transaction of its own, retrying races and deadlocks."""
    for outcome in outcomes:
        storage.prepare(outcome)
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with db.scope() as s:
                return storage.store(
                    s,
                    job_log_id=job_log_id,
                    outcomes=outcomes,
                    automatic=automatic,
                    worker=worker or _process(),
                    now=utcnow(),
                )
        except IntegrityError:
            # Another run stored a version of one of these devices at the same moment: read
            # the new latest versions and decide again.
            if attempt == WRITE_ATTEMPTS - 1:
                raise
        except OperationalError as exc:
            if not is_deadlock(exc) or attempt == WRITE_ATTEMPTS - 1:
                raise
        time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _target(item: Plan, logins: dict[int, Any]) -> Target:
    assert item.host is not None
    return Target(
        key=item.device_id,
        host=item.host,
        port=item.port,
        platform=item.platform,
        credentials=[logins[c] for c, _ in item.candidates],
        command=item.command,
    )


async def collect_and_store(
    db: Database,
    *,
    job_log_id: int,
    plans: Sequence[Plan],
    logins: dict[int, Any],
    cfg: RunConfig,
    automatic: bool,
    cancelled: Callable[[], bool],
    run_timeout: float | None = None,
) -> dict[str, int]:
    """Collect from every planned device and store the results in batches as they come."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Outcome | None] = asyncio.Queue()
    totals = {"done": 0, "changed": 0, "unchanged": 0, "failed": 0, "unwritten": 0}
    worker = _process()

    async def writer() -> None:
        stop = False
        while not stop:
            first = await queue.get()
            if first is None:
                return
            batch = [first]
            # Whatever is already waiting goes in (up to MAX_BATCH, when the database fell
            # behind); otherwise wait a little for a batch to fill.
            while len(batch) < MAX_BATCH and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            deadline = loop.time() + FLUSH_SECONDS
            while not stop and len(batch) < BATCH:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                added = await asyncio.to_thread(
                    write,
                    db,
                    job_log_id=job_log_id,
                    outcomes=batch,
                    automatic=automatic,
                    worker=worker,
                )
            except Exception:
                # The devices of this batch stay without a result; the run goes on.
                log.exception("could not store %d results of run %s", len(batch), job_log_id)
                totals["unwritten"] += len(batch)
                continue
            for key, value in added.items():
                totals[key] += value

    writer_task = asyncio.create_task(writer())
    by_id = {p.device_id: p for p in plans}
    now = utcnow()
    targets = []
    for item in plans:
        if item.problem is not None:
            queue.put_nowait(storage.failure(item, *item.problem, now=now))
        else:
            targets.append(_target(item, logins))

    def on_result(target: Target, result: Result) -> None:
        # Cleaned here, on the loop: a second thread doing CPU work would only fight the loop
        # for the GIL; the writer thread then mostly waits on the database.
        outcome = storage.prepare(storage.from_result(by_id[target.key], result, now=utcnow()))
        queue.put_nowait(outcome)

    collecting = asyncio.create_task(
        collect_many(
            targets,
            concurrency=cfg.concurrency,
            timeout=cfg.timeout,
            run_timeout=run_timeout if run_timeout is not None else cfg.run_timeout,
            on_result=on_result,
            retries=cfg.retries,
            backoff=cfg.backoff,
        )
    )

    async def watch() -> None:
        while not collecting.done():
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            if await asyncio.to_thread(cancelled):
                collecting.cancel()
                return

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait([collecting])
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        queue.put_nowait(None)
        await writer_task
    if not collecting.cancelled() and collecting.exception() is not None:
        log.error("collection of run %s failed: %r", job_log_id, collecting.exception())
    return totals


def collect_devices(
    db: Database,
    *,
    job_log_id: int,
    device_ids: Sequence[int],
    cfg: RunConfig,
    automatic: bool,
    cancelled: Callable[[], bool],
    say: Callable[..., None] | None = None,
    run_timeout: float | None = None,
) -> dict[str, int]:
    """Plan, collect and store some devices in this process; the counters added to the run."""
    with db.scope(write=False) as s:
        plans = storage.plan(s, device_ids)
        logins, broken = storage.login_credentials(s, plans)
    storage.drop_unusable(plans, logins)
    if say is not None:
        for cred_id, name in sorted(broken.items()):
            say(
                "error",
                f"credential {name!r} cannot be decrypted with the configured keys; skipped",
                category="credentials",
                details={"credential_id": cred_id},
            )
    try:
        return asyncio.run(
            collect_and_store(
                db,
                job_log_id=job_log_id,
                plans=plans,
                logins=logins,
                cfg=cfg,
                automatic=automatic,
                cancelled=cancelled,
                run_timeout=run_timeout,
            )
        )
    finally:
        logins.clear()  # decrypted secrets leave memory with the run


def _record_missing(
    db: Database,
    *,
    job_log_id: int,
    device_ids: Sequence[int],
    code: str,
    message: str,
    automatic: bool,
) -> dict[str, int]:
    """Give every device of the run without a result one, so the log accounts for all."""
    with db.scope(write=False) as s:
        missing = sorted(set(device_ids) - repository.recorded_devices(s, job_log_id, device_ids))
        names = repository.device_names(s, missing)
    now = utcnow()
    outcomes = [
        storage.failure(
            Plan(
                device_id=d, name=names.get(d, str(d)), host=None, port=0, platform="", command=None
            ),
            code,
            message,
            now=now,
        )
        for d in missing
        if d in names
    ]
    totals = {"done": 0, "changed": 0, "unchanged": 0, "failed": 0}
    for part in repository.chunks(outcomes, BATCH):
        for key, value in write(
            db, job_log_id=job_log_id, outcomes=part, automatic=automatic
        ).items():
            totals[key] += value
    return totals


def _distribute(
    ctx: TaskContext, device_ids: list[int], *, cfg: RunConfig, automatic: bool
) -> bool:
    """Hand the devices to the workers in units and wait for them; whether it was cancelled."""
    deadline = time.time() + cfg.run_timeout
    units = [list(part) for part in repository.chunks(device_ids, cfg.unit_size)]
    with ctx.db.scope() as s:
        unit_ids = [
            jobs.enqueue(
                s,
                UNIT_TASK,
                params={
                    "parent_id": ctx.job_log_id,
                    "device_ids": part,
                    "automatic": automatic,
                    "deadline": deadline,
                },
                device_id=part[0] if len(part) == 1 else None,
            ).id
            for part in units
        ]
    ctx.log(
        "info",
        f"{len(device_ids)} devices handed to the workers in {len(units)} units",
        category="run",
        details={"units": len(units), "unit_size": cfg.unit_size},
    )
    was_cancelled = False
    while True:
        with ctx.db.scope(write=False) as s:
            states = repository.run_states(s, unit_ids)
        if all(states.get(i, ("failed", False))[0] in FINISHED for i in unit_ids):
            break
        if not was_cancelled and ctx.cancelled():
            # Units see the run's cancel flag and stop; wait a little for those running.
            was_cancelled = True
            deadline = min(deadline, time.time() + GRACE_SECONDS)
        if time.time() > deadline + GRACE_SECONDS:
            break
        time.sleep(CANCEL_POLL_SECONDS)
    if was_cancelled:
        return True
    if time.time() > deadline:
        code, message = "timeout", f"run time limit of {cfg.run_timeout:g} s reached"
    else:
        code, message = storage.LOST, "the worker collecting this device stopped before reporting"
    _record_missing(
        ctx.db,
        job_log_id=ctx.job_log_id,
        device_ids=device_ids,
        code=code,
        message=message,
        automatic=automatic,
    )
    return False


def _summary(db: Database, job_log_id: int, *, devices: int) -> dict[str, Any]:
    with db.scope(write=False) as s:
        counters = repository.run_counters(s, job_log_id) or {}
    failed = counters.get("failed", 0)
    return {
        "devices": devices,
        "changed": counters.get("changed", 0),
        "unchanged": counters.get("unchanged", 0),
        "failed": failed,
        "message": (
            f"{counters.get('done', 0)} of {devices} devices: {counters.get('changed', 0)} "
            f"changed, {counters.get('unchanged', 0)} unchanged, {failed} failed"
        ),
        "counters": counters,
    }


def _adopt_counters(ctx: TaskContext, counters: dict[str, int]) -> None:
    # The stored counters are the truth (workers add to them); the engine writes ctx's at the end.
    ctx.progress(
        **{k: int(counters.get(k, 0)) for k in ("total", "done", "changed", "unchanged", "failed")}
    )


@task("backups.run")
def run(
    ctx: TaskContext,
    *,
    device_ids: list[int] | None = None,
    tag_ids: list[int] | None = None,
    automatic: bool = False,
    local: bool = False,
) -> dict[str, Any]:
    """Collect the configurations of some devices, of the devices with some tags, or of all."""
    with ctx.db.scope(write=False) as s:
        ids = service.resolve_devices(s, device_ids=device_ids, tag_ids=tag_ids)
        cfg = run_config(s)
    ctx.progress(total=len(ids), done=0, changed=0, unchanged=0, failed=0)
    ctx.flush()  # before any worker adds to the counters
    if not ids:
        ctx.log("info", "no devices to collect", category="run")
        return {"devices": 0, "message": "no devices matched"}
    distributed = bool(get_settings().redis_url) and not local and len(ids) > cfg.unit_size
    ctx.log(
        "info",
        f"collecting {len(ids)} devices "
        + ("on the workers" if distributed else f"here, {cfg.concurrency} at a time")
        + f" (device time limit {cfg.timeout:g} s, retries {cfg.retries})",
        category="run",
    )
    ctx.flush()  # the run's first line comes before the devices' entries
    if distributed:
        _distribute(ctx, ids, cfg=cfg, automatic=automatic)
    else:
        added = collect_devices(
            ctx.db,
            job_log_id=ctx.job_log_id,
            device_ids=ids,
            cfg=cfg,
            automatic=automatic,
            cancelled=ctx.cancelled,
            say=ctx.log,
        )
        if added.get("unwritten"):
            ctx.log(
                "error",
                f"the results of {added['unwritten']} devices could not be stored (see the "
                "server log); what was stored before is unchanged",
                category="storage",
            )
    summary = _summary(ctx.db, ctx.job_log_id, devices=len(ids))
    _adopt_counters(ctx, summary.pop("counters"))
    return summary


class _ParentWatch:
    """Whether the run a unit belongs to was cancelled (read at most every half second)."""

    def __init__(self, db: Database, parent_id: int) -> None:
        self.db = db
        self.parent_id = parent_id
        self.checked = 0.0
        self.seen = False

    def __call__(self) -> bool:
        if self.seen:
            return True
        if time.monotonic() - self.checked >= CANCEL_POLL_SECONDS:
            self.checked = time.monotonic()
            with self.db.scope(write=False) as s:
                state = repository.run_states(s, [self.parent_id]).get(self.parent_id)
            self.seen = state is None or state[1] or state[0] in FINISHED
        return self.seen


@task(UNIT_TASK)
def unit(
    ctx: TaskContext,
    *,
    parent_id: int,
    device_ids: list[int],
    automatic: bool = False,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Collect a share of a backup run's devices (Redis mode); results go to the run's log."""
    parent = _ParentWatch(ctx.db, parent_id)
    if parent():
        return {"skipped": len(device_ids), "message": "the run was cancelled or has ended"}
    with ctx.db.scope(write=False) as s:
        cfg = run_config(s)
    remaining = None if deadline is None else max(1.0, deadline - time.time())
    added = collect_devices(
        ctx.db,
        job_log_id=parent_id,
        device_ids=device_ids,
        cfg=cfg,
        automatic=automatic,
        cancelled=lambda: ctx.cancelled() or parent(),
        say=ctx.log,
        run_timeout=remaining,
    )
    ctx.progress(
        total=len(device_ids),
        done=added["done"],
        changed=added["changed"],
        unchanged=added["unchanged"],
        failed=added["failed"],
    )
    return {"parent_id": parent_id, **added}


@periodic("backups.retention", every=timedelta(hours=6))
def retention(ctx: TaskContext) -> dict[str, Any]:
    """Delete stored versions past backup.retention_versions / retention_days (never the newest)."""
    deleted = 0
    while not ctx.cancelled():
        with ctx.db.scope() as s:
            count = service.prune(s, now=utcnow())
        deleted += count
        ctx.progress(done=deleted)
        if count == 0:
            break
    ctx.log("info", f"deleted {deleted} stored versions past retention", category="retention")
    return {"deleted": deleted}


def fire_scheduled_jobs(session: Any, now: Any) -> None:
    """Scheduler hook: queue a run of every scheduled job that is due."""
    fired = service.fire_due(session, now=now)
    if fired:
        log.info("scheduled jobs fired: runs %s", fired)


def _register_hook() -> None:
    # Importing this module twice (a reload, `python -m`) must not register the hook twice.
    for hook in registry.scheduler_hooks:
        if (hook.__module__, hook.__qualname__) == (__name__, fire_scheduled_jobs.__qualname__):
            return
    registry.scheduler_hooks.append(fire_scheduled_jobs)


_register_hook()
