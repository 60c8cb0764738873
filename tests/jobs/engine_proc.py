"""A serving process without HTTP, for the multi-process tests: start_engine until SIGTERM.

Run as `python -m tests.jobs.engine_proc`; configured by LABKEEPER_* environment variables.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from labkeeper.config import Settings
from labkeeper.core.db import Database, make_engine
from labkeeper.jobs.engine import start_engine


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings = Settings()
    db = Database(make_engine(settings.database_url, pool_size=5))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    handle = start_engine(db, settings)
    print("engine ready", file=sys.stderr, flush=True)
    stop.wait(float(os.environ.get("TEST_ENGINE_MAX_SECONDS", "60")))
    handle.stop()
    db.dispose()
    print("engine stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
