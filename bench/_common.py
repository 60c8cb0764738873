"""Helpers shared by the benchmarks: start a real `labkeeper serve`, make databases, time things."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select, text

BIN = Path(sys.executable).parent / "labkeeper"
PG_ADMIN = os.environ.get(
    "LABKEEPER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_available() -> bool:
    """Whether PostgreSQL answers on 127.0.0.1:5432."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), timeout=1):
        return True
    return False


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, empty database URL on `backend` (sqlite or postgresql), dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"labkeeper_bench_{os.getpid()}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def env_for(url: str, **extra: str) -> dict[str, str]:
    """The environment a labkeeper process needs for this database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKEEPER_")}
    # The benchmark signs in many times from one address: lift the per-address limit.
    env.update(
        LABKEEPER_DATABASE_URL=url,
        LABKEEPER_LOG_LEVEL="WARNING",
        LABKEEPER_LOGIN_RATE_PER_MINUTE="1000000",
        **extra,
    )
    return env


def cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    """Run `labkeeper ARGS` and return its standard output (raises on failure)."""
    out = subprocess.run(
        [str(BIN), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return out.stdout.strip()


@contextlib.contextmanager
def server(env: dict[str, str], port: int, workers: int = 1) -> Iterator[str]:
    """`labkeeper serve` in a subprocess until the block ends; yields its base URL."""
    import httpx

    # A file, not a pipe: nobody reads a pipe while the load runs, and a full pipe would
    # stall the server on its next log line.
    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in the finally below)
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port), "--no-scheduler", "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(log.read().decode() or "server died")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def add_devices(session: Any, count: int) -> list[int]:
    """`count` bookable devices of one new type, named dev0000...; their ids in order."""
    from labkeeper.inventory.models import Device, DeviceType

    kind = DeviceType(name="router", is_schedulable=True)
    session.add(kind)
    session.flush()
    session.execute(
        insert(Device), [{"name": f"dev{i:04d}", "device_type_id": kind.id} for i in range(count)]
    )
    return list(session.scalars(select(Device.id).order_by(Device.id)))


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (0-100) of values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")
