"""`labkeeper worker`: execute runs from Redis in the foreground (Redis mode only).

Also runnable as `python -m labkeeper.jobs.worker [--threads N]`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import Any

from labkeeper.config import Settings, get_settings
from labkeeper.core.db import Database, make_engine
from labkeeper.jobs import registry
from labkeeper.jobs.context import ensure_heartbeat
from labkeeper.jobs.engine import (
    QUEUE_NAME,
    RedisDispatcher,
    declare_actor,
    make_broker,
    namespace,
    set_dispatcher,
)

log = logging.getLogger(__name__)

# How long a stopping worker lets running tasks finish; what is still running after that is
# interrupted, and the reaper marks it failed.
STOP_GRACE_SECONDS = 30


def run_worker(settings: Settings, threads: int = 8) -> None:
    """Execute runs from Redis until SIGINT or SIGTERM; no scheduler, no HTTP, nothing else."""
    import dramatiq

    if not settings.redis_url:
        raise RuntimeError("LABKEEPER_REDIS_URL is not set; a worker needs Redis")
    registry.load_all()
    database = Database(make_engine(settings.database_url, pool_size=threads + 4))
    broker = make_broker(settings)
    dramatiq.set_broker(broker)
    actor = declare_actor(broker, database)
    # Tasks that queue further runs send them through the same broker.
    previous = set_dispatcher(RedisDispatcher(settings, broker=broker, actor=actor))
    ensure_heartbeat()

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("worker got signal %s; finishing running tasks", signum)
        stop.set()

    handlers: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, _on_signal)

    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=1000)
    worker.start()
    log.info(
        "labkeeper worker ready: %d threads, queue %s, namespace %s",
        threads,
        QUEUE_NAME,
        namespace(settings),
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        worker.stop(timeout=STOP_GRACE_SECONDS * 1000)
        set_dispatcher(previous)
        broker.close()
        database.dispose()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        log.info("labkeeper worker stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m labkeeper.jobs.worker`."""
    from labkeeper.core.observability import setup_logging

    parser = argparse.ArgumentParser(
        prog="python -m labkeeper.jobs.worker", description=run_worker.__doc__
    )
    parser.add_argument("--threads", type=int, default=8, help="tasks run at once")
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    run_worker(settings, threads=max(1, args.threads))


if __name__ == "__main__":
    main()
