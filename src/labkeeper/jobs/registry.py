"""What background work exists: tasks, periodic system tasks and scheduler hooks.

Domains declare their work in `labkeeper/<domain>/tasks.py`:

    @task("backups.collect")
    def collect(ctx: TaskContext, *, device_ids: list[int]) -> dict[str, Any]: ...

    @periodic("health.check", every=lambda s: settings.get(s, "health.interval_seconds"))
    def check(ctx: TaskContext) -> None: ...

A task gets ids, never ORM objects, and opens its own short transactions with
`ctx.db.scope()`. The engine imports every domain's `tasks` module when it starts, so the
declarations register.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# The domains whose `tasks` modules are imported at start (a missing module is skipped).
DOMAINS = ("auth", "inventory", "booking", "topology", "backups", "jobs", "admin", "notify")
# Extra modules to import, comma-separated (plugins; the test suite's sample tasks).
MODULES_ENV = "LABKEEPER_JOBS_MODULES"

TaskFn = Callable[..., "dict[str, Any] | None"]
Every = timedelta | Callable[[Session], float]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class TaskDef:
    """A task: a name and the function that runs it, `fn(ctx, **params) -> dict | None`."""

    name: str
    fn: TaskFn

    @property
    def description(self) -> str:
        """The first line of the function's docstring."""
        return (self.fn.__doc__ or "").strip().split("\n", 1)[0]


@dataclass(frozen=True)
class PeriodicDef:
    """A periodic system task: the task of the same name, run every `every`."""

    name: str
    every: Every
    # `when(session, now)`: whether a due run has anything to do. A run is only fired (and
    # recorded) when it does; otherwise the task is looked at again on the next tick.
    when: Callable[[Session, datetime], bool] | None = None

    def interval(self, session: Session) -> timedelta:
        """The current interval (a callable reads it, e.g. from a setting)."""
        if isinstance(self.every, timedelta):
            value = self.every
        else:
            value = timedelta(seconds=float(self.every(session)))
        # A zero or negative interval would fire on every tick; one second is the floor.
        return max(value, timedelta(seconds=1))


TASKS: dict[str, TaskDef] = {}
PERIODIC: dict[str, PeriodicDef] = {}

# Called by the scheduler loop on every tick while it holds the lease, each in its own
# transaction: `hook(session, now)`. The backups domain fires user-defined scheduled jobs here.
scheduler_hooks: list[Callable[[Session, datetime], None]] = []
_loaded = False


def _same(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # A module imported twice (reload, `python -m`) declares the same function again.
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def task(name: str) -> Callable[[F], F]:
    """Declare a task: `@task("domain.name")` on `fn(ctx: TaskContext, **params)`."""
    if not name or len(name) > 100:
        raise ValueError(f"a task name needs 1 to 100 characters: {name!r}")

    def decorate(fn: F) -> F:
        existing = TASKS.get(name)
        if existing is not None and not _same(existing.fn, fn):
            raise ValueError(f"task {name!r} is declared twice ({existing.fn.__module__})")
        TASKS[name] = TaskDef(name=name, fn=fn)
        return fn

    return decorate


def periodic(
    name: str, *, every: Every, when: Callable[[Session, datetime], bool] | None = None
) -> Callable[[F], F]:
    """Declare a periodic system task (also runnable as a task) fired by the scheduler loop.

    With `when`, a due run is fired only if `when(session, now)` says there is work (a cheap
    query), so a task that mostly has nothing to do can look often without a job log per look.
    """
    if isinstance(every, timedelta) and every <= timedelta(0):
        raise ValueError(f"periodic task {name!r} needs a positive interval")

    def decorate(fn: F) -> F:
        task(name)(fn)
        PERIODIC[name] = PeriodicDef(name=name, every=every, when=when)
        return fn

    return decorate


def get_task(name: str) -> TaskDef | None:
    """The task declared under a name (loading the domains' tasks if need be), or None."""
    if name not in TASKS:
        ensure_loaded()
    return TASKS.get(name)


def ensure_loaded() -> None:
    """`load_all()` once per process (a process without the engine still enqueues and lists)."""
    if not _loaded:
        load_all()


def extra_modules() -> list[str]:
    """Modules named in LABKEEPER_JOBS_MODULES."""
    return [m.strip() for m in os.environ.get(MODULES_ENV, "").split(",") if m.strip()]


def load_all(extra: Iterable[str] = ()) -> list[str]:
    """Import every domain's `tasks` module (and any extra modules) so their tasks register."""
    loaded = []
    for name in [f"labkeeper.{d}.tasks" for d in DOMAINS] + [*extra_modules(), *extra]:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only a domain without a tasks module is fine; a broken import is a bug to surface.
            if exc.name != name or not name.startswith("labkeeper."):
                raise
            continue
        loaded.append(name)
    global _loaded
    _loaded = True
    log.debug("task modules loaded: %s", ", ".join(loaded))
    return loaded
