"""Tasks used by the jobs tests; child processes load them via LABKEEPER_JOBS_MODULES."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from labkeeper.jobs.context import TaskContext
from labkeeper.jobs.registry import periodic, task

TICK_EVERY = timedelta(seconds=1)


@task("test.echo")
def echo(
    ctx: TaskContext, *, value: Any = None, sleep: float = 0.0, entries: int = 1
) -> dict[str, Any]:
    """Log some entries, optionally sleep, and return the value."""
    for i in range(entries):
        ctx.log("info", f"echo {i}", category="test", details={"i": i})
    if sleep:
        time.sleep(sleep)
    ctx.progress(total=1, done=1, changed=1)
    return {"value": value, "worker": ctx.worker}


@task("test.fail")
def fail(ctx: TaskContext, *, message: str = "boom") -> None:
    """Always raise."""
    ctx.log("info", "about to fail")
    raise RuntimeError(message)


@task("test.partial")
def partial(ctx: TaskContext, *, total: int = 4, failed: int = 1, explicit: bool = False) -> Any:
    """Fail some items (or say "partial" outright)."""
    if explicit:
        return {"status": "partial", "message": "said so"}
    ctx.progress(total=total)
    for i in range(total):
        ctx.advance(done=1, failed=1 if i < failed else 0, changed=0 if i < failed else 1)
    return None


@task("test.slow")
def slow(ctx: TaskContext, *, seconds: float = 10.0, step: float = 0.05) -> dict[str, Any] | None:
    """Work in small steps until done or cancelled."""
    steps = int(seconds / step)
    ctx.progress(total=steps)
    for _ in range(steps):
        if ctx.cancelled():
            ctx.log("warning", "stopping on request")
            return None
        time.sleep(step)
        ctx.advance(done=1)
    return {"finished": True}


@periodic("test.tick", every=TICK_EVERY)
def tick(ctx: TaskContext) -> dict[str, Any]:
    """A periodic task for the scheduler tests."""
    return {"worker": ctx.worker}
