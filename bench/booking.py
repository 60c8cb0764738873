"""Benchmark bookings (not a test): availability, free devices, the timeline, and booking over
HTTP with many clients, on SQLite and PostgreSQL, as the bookings table grows.

For each backend: a fresh database, 500 devices, then bookings bulk-inserted in stages (10,000,
100,000, 1,000,000 by default). Each device's history runs back from 14 days ahead at about one
booking a day (1 to 8 hours), as a lab accumulates it: past rows COMPLETED (some cancelled,
rejected or expired), current ones ACTIVE, future ones CONFIRMED or PENDING. After each stage:

  - one device's availability for a 2-hour window (service layer; p50/p95),
  - all devices free for a 2-hour window (service layer),
  - a one-week timeline of all devices: this week, and next week,
  - booking creation through HTTP (uvicorn on 127.0.0.1) by 32 concurrent clients on random
    devices and hours: successful bookings per second,
  - a hot spot: 64 clients on 3 devices: attempts per second, zero 5xx, zero overlaps.

The service-layer figures run in this process after `gc.freeze()` (see run_backend).

Targets: availability p95 <= 5 ms, free devices p95 <= 25 ms, timeline p95 <= 50 ms,
HTTP >= 300 bookings/s on PostgreSQL; the hot spot must show no overlap and no 5xx.

Usage: python bench/booking.py [--backends sqlite postgresql] [--sizes 10000 100000 1000000]
       [--devices 500] [--http-seconds 8] [--workers N] [--quick] [--no-gc-freeze]
The server runs as the README advises: one process on SQLite (its writers queue on one lock,
and a second process only adds latency), one per core on PostgreSQL; --workers overrides.
PostgreSQL: LABKEEPER_BENCH_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("LABKEEPER_ENV", "development")

from _common import add_devices  # noqa: E402

from labkeeper.admin import service as settings_service  # noqa: E402
from labkeeper.auth import service as auth_service  # noqa: E402
from labkeeper.auth.schemas import TokenCreate, UserCreate  # noqa: E402
from labkeeper.booking import service  # noqa: E402
from labkeeper.booking.models import Booking  # noqa: E402
from labkeeper.core import migrate  # noqa: E402
from labkeeper.core.audit import SYSTEM  # noqa: E402
from labkeeper.core.db import Database, make_engine  # noqa: E402
from labkeeper.core.pagination import PageParams  # noqa: E402

PG_ADMIN = os.environ.get(
    "LABKEEPER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TARGETS = {"availability": 5.0, "free": 25.0, "timeline": 50.0, "http_pg": 300.0}
USERS = 16
HISTORY_AHEAD = timedelta(days=14)  # generated bookings reach this far ahead
HOLDING = ("PENDING", "CONFIRMED", "ACTIVE")


# -- the database ---------------------------------------------------------------------------


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A new, empty database; its URL."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="labkeeper-bench-") as tmp:
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


@dataclass
class Lab:
    devices: list[int]
    users: list[int]
    tokens: list[str]
    cursors: dict[int, datetime] = field(default_factory=dict)
    made: int = 0


def populate(db: Database, devices: int) -> Lab:
    """Devices, users with API tokens, and settings that let one user hold many bookings."""
    migrate.upgrade(db.engine)
    with db.scope() as s:
        device_ids = add_devices(s, devices)
        users, tokens = [], []
        for i in range(USERS):
            user = auth_service.create_user(
                s,
                data=UserCreate(username=f"bench{i}", password="bench-password-1", role="member"),
                actor=SYSTEM,
                check_grant=False,
            )
            _, token = auth_service.create_token(
                s, principal=SYSTEM, data=TokenCreate(name="bench"), user_id=user.id
            )
            users.append(user.id)
            tokens.append(token)
        settings_service.put(s, key="booking.max_active_per_user", value=10**9, actor=SYSTEM)
    return Lab(devices=device_ids, users=users, tokens=tokens)


def _rows(lab: Lab, count: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    """`count` more bookings, spread evenly over the devices, each device's history growing
    backwards from HISTORY_AHEAD without overlaps (naive UTC times, as stored)."""
    rng = random.Random(lab.made)
    per_device = count // len(lab.devices)
    anchor = (now + HISTORY_AHEAD).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    naive_now = now.replace(tzinfo=None)
    for device in lab.devices:
        cursor = lab.cursors.get(device, anchor)
        for _ in range(per_device):
            cursor -= timedelta(hours=rng.randint(8, 32))
            end = cursor
            start = end - timedelta(hours=rng.randint(1, 8))
            cursor = start
            if end <= naive_now:
                roll = rng.random()
                status = "COMPLETED" if roll < 0.95 else "CANCELLED" if roll < 0.98 else "EXPIRED"
            elif start <= naive_now:
                status = "ACTIVE"
            else:
                status = "CONFIRMED" if rng.random() < 0.85 else "PENDING"
            created = start - timedelta(days=rng.randint(1, 30))
            yield (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                device,
                lab.users[rng.randrange(len(lab.users))],
                start,
                end,
                status,
                created,
                created,
            )
        lab.cursors[device] = cursor
    lab.made += per_device * len(lab.devices)


COLUMNS = (
    "grouped_booking_id", "device_id", "user_id", "start_time", "end_time", "status",
    "created_at", "updated_at",
)  # fmt: skip


def bulk_insert(db: Database, lab: Lab, count: int, now: datetime) -> float:
    """Insert `count` bookings the fastest way each backend offers; seconds taken."""
    began = time.perf_counter()
    rows = _rows(lab, count, now)
    if db.backend == "postgresql":
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY bookings ({', '.join(COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows:
                    copy.write_row(row)
            raw.commit()
            # As after any bulk load: otherwise autovacuum visits the new rows during the
            # measurements that follow (and index-only scans visit the heap until it has).
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            cur.execute("VACUUM (ANALYZE) bookings")
            # And the load's dirty pages written out now, not by a checkpoint in the middle of
            # the next measurements (seen: the 1M stage's week timeline p95 41 -> 117 ms).
            cur.execute("CHECKPOINT")
        finally:
            raw.close()
    else:
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("BEGIN")
            placeholders = ", ".join("?" for _ in COLUMNS)
            fmt = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DATETIME text form
            batch: list[tuple[Any, ...]] = []
            stmt = f"INSERT INTO bookings ({', '.join(COLUMNS)}) VALUES ({placeholders})"
            for g, d, u, s, e, st, c, up in rows:
                batch.append(
                    (
                        g,
                        d,
                        u,
                        s.strftime(fmt),
                        e.strftime(fmt),
                        st,
                        c.strftime(fmt),
                        up.strftime(fmt),
                    )
                )
                if len(batch) >= 50_000:
                    cur.executemany(stmt, batch)
                    batch.clear()
            if batch:
                cur.executemany(stmt, batch)
            cur.execute("COMMIT")
            cur.execute("ANALYZE")
        finally:
            raw.close()
    # On disk before anything is measured: writeback of a large insert otherwise competes with
    # the next stage's commits (seen: PostgreSQL bookings/s a quarter lower after SQLite's 1M).
    os.sync()
    return time.perf_counter() - began


# -- service-layer timings ------------------------------------------------------------------


def timed(db: Database, runs: int, call: Callable[[Any, int], Any]) -> dict[str, float]:
    """p50/p95 in ms of `call(session, i)`, each in its own read transaction."""
    samples = []
    for i in range(runs + 3):
        began = time.perf_counter()
        with db.scope(write=False) as s:
            call(s, i)
        if i >= 3:  # the first calls warm caches and the pool
            samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return {
        "p50": statistics.median(samples),
        "p95": samples[max(0, int(len(samples) * 0.95) - 1)],
    }


def service_figures(db: Database, lab: Lab, now: datetime, quick: bool) -> dict[str, Any]:
    rng = random.Random(1)
    hour = now.replace(minute=0, second=0, microsecond=0)

    def window(i: int) -> tuple[datetime, datetime]:
        start = hour + timedelta(hours=rng.randint(1, 14 * 24))
        return start, start + timedelta(hours=2)

    def one(s: Any, i: int) -> None:
        start, end = window(i)
        service.device_availability(
            s, device_id=lab.devices[rng.randrange(len(lab.devices))], start=start, end=end
        )

    def free(s: Any, i: int) -> None:
        start, end = window(i)
        service.free_devices(s, start=start, end=end, filters={}, page=PageParams(limit=500))

    week_start = hour.replace(hour=0) - timedelta(days=hour.weekday())
    counted: dict[str, int] = {}

    def timeline(offset: timedelta) -> Callable[[Any, int], None]:
        def run(s: Any, i: int) -> None:
            grid = service.timeline(
                s,
                start=week_start + offset,
                end=week_start + offset + timedelta(days=7),
                filters={},
                page=PageParams(limit=500),
            )
            counted[str(offset.days)] = sum(len(lane["bookings"]) for lane in grid["items"])

        return run

    out = {
        # Enough runs that the p95 is not just the slowest run or two (a busy neighbour on
        # this shared machine shows up as one slow run).
        "availability": timed(db, 100 if quick else 300, one),
        "free": timed(db, 30 if quick else 100, free),
        "timeline": timed(db, 10 if quick else 60, timeline(timedelta(0))),
        "timeline_ahead": timed(db, 5 if quick else 40, timeline(timedelta(days=7))),
    }
    out["timeline_rows"] = counted.get("0", 0)
    out["timeline_ahead_rows"] = counted.get("7", 0)
    return out


# -- HTTP -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(url: str, workers: int) -> Iterator[str]:
    """labkeeper under uvicorn on 127.0.0.1 (its own processes), until the block ends."""
    port = _free_port()
    env = {
        **os.environ,
        "LABKEEPER_DATABASE_URL": url,
        "LABKEEPER_RUN_SCHEDULER": "false",
        "LABKEEPER_DB_POOL_SIZE": "40",
        "LABKEEPER_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT / "src"),
    }
    cmd = [
        sys.executable, "-m", "uvicorn", "labkeeper.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    log = Path(tempfile.gettempdir()) / f"labkeeper-bench-server-{port}.log"
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield base
    finally:
        if "Traceback" in log.read_text(errors="replace"):
            print(f"    (the server logged errors: {log})", flush=True)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def hammer(
    base: str,
    tokens: list[str],
    clients: int,
    seconds: float,
    body: Callable[[random.Random], dict[str, Any]],
    seed: int = 0,
) -> dict[str, Any]:
    """`clients` threads posting bookings for `seconds`; counts by status and latencies."""
    counts: dict[int, int] = {}
    reasons: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        mine: dict[int, int] = {}
        lat: list[float] = []
        with httpx.Client(base_url=base, timeout=60, headers=headers) as c:
            c.get("/healthz")
            barrier.wait()
            while time.monotonic() < stop_at[0]:
                began = time.perf_counter()
                try:
                    r = c.post("/api/v1/bookings", json=body(rng))
                    code = r.status_code
                    if code != 201:
                        reasons[r.json().get("error", {}).get("code", str(code))] += 1
                except (httpx.HTTPError, ValueError):
                    code = 599
                lat.append(time.perf_counter() - began)
                mine[code] = mine.get(code, 0) + 1
        with lock:
            for k, v in mine.items():
                counts[k] = counts.get(k, 0) + v
            latencies.extend(lat)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + seconds
    barrier.wait()
    began = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    latencies.sort()
    total = sum(counts.values())
    return {
        "elapsed": elapsed,
        "attempts": total,
        "attempts_per_s": total / elapsed,
        "ok_per_s": counts.get(201, 0) / elapsed,
        "counts": dict(sorted(counts.items())),
        "refusals": dict(reasons),
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000 if latencies else 0.0,
        "errors_5xx": sum(v for k, v in counts.items() if k >= 500),
    }


WRK_SCRIPT = """
local devices = {%(devices)s}
local tokens = {%(tokens)s}
local from, slots, step = %(start)d, %(slots)d, %(step)d
local lengths = {%(lengths)s}
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(%(seed)d * 1000 + id)
  c201, c409, c422, c5xx, cother = 0, 0, 0, 0, 0
end
local function iso(t) return os.date("!%%Y-%%m-%%dT%%H:%%M:%%S+00:00", t) end
function request()
  local s = from + (math.random(slots) - 1) * step
  local e = s + lengths[math.random(#lengths)]
  local body = string.format('{"items":[{"device_id":%%d,"start":"%%s","end":"%%s"}]}',
    devices[math.random(#devices)], iso(s), iso(e))
  local headers = {["Content-Type"] = "application/json",
                   ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]}
  return wrk.format("POST", "/api/v1/bookings", headers, body)
end
function response(status, headers, body)
  if status == 201 then c201 = c201 + 1
  elseif status == 409 then c409 = c409 + 1
  elseif status == 422 then c422 = c422 + 1
  elseif status >= 500 then c5xx = c5xx + 1
  else cother = cother + 1 end
end
function done(summary, latency, requests)
  local t = {0, 0, 0, 0, 0}
  for _, th in ipairs(threads) do
    t[1] = t[1] + th:get("c201"); t[2] = t[2] + th:get("c409"); t[3] = t[3] + th:get("c422")
    t[4] = t[4] + th:get("c5xx"); t[5] = t[5] + th:get("cother")
  end
  io.write(string.format("LK %%d %%d %%d %%d %%d %%d %%f\\n", t[1], t[2], t[3], t[4], t[5],
    summary.duration, latency:percentile(95)))
end
"""


def wrk_hammer(
    base: str,
    tokens: list[str],
    clients: int,
    seconds: float,
    *,
    devices: list[int],
    start: datetime,
    slots: int,
    step: timedelta,
    lengths: list[timedelta],
    seed: int = 0,
) -> dict[str, Any]:
    """Like `hammer`, with wrk (a C client: the cores stay with the server) and a Lua script
    that posts a random device and slot each time; same figures."""
    script = WRK_SCRIPT % {
        "devices": ",".join(map(str, devices)),
        "tokens": ",".join(f'"{t}"' for t in tokens),
        "start": int(start.timestamp()),
        "slots": slots,
        "step": int(step.total_seconds()),
        "lengths": ",".join(str(int(x.total_seconds())) for x in lengths),
        "seed": seed,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{clients}", f"-d{max(1, int(seconds))}s", "-s", f.name, base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    line = next(x for x in out.splitlines() if x.startswith("LK "))
    ok, c409, c422, c5xx, other, micros, p95 = (float(v) for v in line.split()[1:])
    elapsed = micros / 1e6
    total = ok + c409 + c422 + c5xx + other
    counts = {201: int(ok), 409: int(c409), 422: int(c422), 500: int(c5xx), 0: int(other)}
    return {
        "elapsed": elapsed,
        "attempts": int(total),
        "attempts_per_s": total / elapsed,
        "ok_per_s": ok / elapsed,
        "counts": {k: v for k, v in counts.items() if v},
        "refusals": {},
        "p95_ms": p95 / 1000,
        "errors_5xx": int(c5xx),
    }


def overlaps(
    db: Database, device_ids: list[int] | None = None, since: datetime | None = None
) -> int:
    """Pairs of holding rows of one device whose times overlap."""
    a, b = Booking.__table__.alias("a"), Booking.__table__.alias("b")
    stmt = (
        select(func.count())
        .select_from(a.join(b, a.c.device_id == b.c.device_id))
        .where(
            a.c.id < b.c.id,
            a.c.status.in_(HOLDING),
            b.c.status.in_(HOLDING),
            a.c.start_time < b.c.end_time,
            b.c.start_time < a.c.end_time,
        )
    )
    if device_ids:
        stmt = stmt.where(a.c.device_id.in_(device_ids))
    if since is not None:
        stmt = stmt.where(a.c.start_time >= since, b.c.start_time >= since)
    with db.scope(write=False) as s:
        return int(s.scalar(stmt) or 0)


def http_figures(
    db: Database, url: str, lab: Lab, stage: int, now: datetime, seconds: float, workers: int
) -> dict[str, Any]:
    hour = now.replace(minute=0, second=0, microsecond=0)
    spread_from = hour + HISTORY_AHEAD + timedelta(days=1)
    hot_from = hour + timedelta(days=88)
    hot_devices = lab.devices[stage * 3 : stage * 3 + 3]

    def spread(rng: random.Random) -> dict[str, Any]:
        start = spread_from + timedelta(hours=rng.randrange(70 * 24))
        device = lab.devices[rng.randrange(len(lab.devices))]
        return {
            "items": [
                {
                    "device_id": device,
                    "start": start.isoformat(),
                    "end": (start + timedelta(hours=1)).isoformat(),
                }
            ]
        }

    def hot(rng: random.Random) -> dict[str, Any]:
        start = hot_from + timedelta(minutes=30 * rng.randrange(80))
        length = timedelta(minutes=30 * rng.randint(1, 4))
        return {
            "items": [
                {
                    "device_id": rng.choice(hot_devices),
                    "start": start.isoformat(),
                    "end": (start + length).isoformat(),
                }
            ]
        }

    with server(url, workers) as base:
        if shutil.which("wrk"):
            spread_result = wrk_hammer(
                base,
                lab.tokens,
                32,
                seconds,
                devices=lab.devices,
                start=spread_from,
                slots=70 * 24,
                step=timedelta(hours=1),
                lengths=[timedelta(hours=1)],
                seed=stage,
            )
            hot_result = wrk_hammer(
                base,
                lab.tokens,
                64,
                seconds,
                devices=hot_devices,
                start=hot_from,
                slots=80,
                step=timedelta(minutes=30),
                lengths=[timedelta(minutes=30 * k) for k in range(1, 5)],
                seed=stage,
            )
        else:  # Python clients: they take CPU from the server, so the figures are lower
            spread_result = hammer(base, lab.tokens, 32, seconds, spread, seed=stage)
            hot_result = hammer(base, lab.tokens, 64, seconds, hot, seed=stage)
    spread_result["overlaps"] = overlaps(db, since=spread_from.replace(tzinfo=UTC))
    hot_result["overlaps"] = overlaps(db, device_ids=hot_devices)
    return {"http": spread_result, "hot": hot_result}


# -- report ---------------------------------------------------------------------------------


def run_backend(backend: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with fresh_database(backend) as url:
        db = Database(make_engine(url, pool_size=10))
        lab = populate(db, args.devices)
        print(f"\n== {backend}: {args.devices} devices ==", flush=True)
        for stage, size in enumerate(args.sizes):
            now = datetime.now(UTC)
            seconds = bulk_insert(db, lab, size - lab.made, now)
            with db.scope(write=False) as s:
                total = s.scalar(select(func.count()).select_from(Booking)) or 0
            print(f"  {total:>9,} bookings (+{seconds:.1f} s to insert)", flush=True)
            # Move what start-up and the insert left behind out of the collector's way, as a
            # server does once its app is built: otherwise a full collection walks every
            # SQLAlchemy/FastAPI object (100-200 ms here) and lands in the p95 of whatever
            # allocates next. `--no-gc-freeze` measures without it.
            gc.collect()
            if not args.no_gc_freeze:
                gc.freeze()
            figures = service_figures(db, lab, now, args.quick)
            workers = args.workers or (1 if backend == "sqlite" else os.cpu_count() or 2)
            figures.update(http_figures(db, url, lab, stage, now, args.http_seconds, workers))
            figures["workers"] = workers
            figures["size"] = size
            figures["rows"] = total
            figures["insert_s"] = seconds
            results.append(figures)
            show_stage(figures)
        db.dispose()
    return results


def show_stage(f: dict[str, Any]) -> None:
    h, hot = f["http"], f["hot"]
    print(
        f"    availability p50 {f['availability']['p50']:.2f} p95 {f['availability']['p95']:.2f} ms"
        f" | free p95 {f['free']['p95']:.1f} ms"
        f" | timeline p95 {f['timeline']['p95']:.1f} ms ({f['timeline_rows']} rows),"
        f" next week {f['timeline_ahead']['p95']:.1f} ms ({f['timeline_ahead_rows']} rows)",
        flush=True,
    )
    print(
        f"    HTTP 32 clients, {f['workers']} server process(es): {h['ok_per_s']:.0f} bookings/s"
        f" ({h['counts']} {h['refusals']}, p95"
        f" {h['p95_ms']:.0f} ms, overlaps {h['overlaps']})"
        f" | hot spot 64x3: {hot['attempts_per_s']:.0f} attempts/s ({hot['counts']},"
        f" 5xx {hot['errors_5xx']}, overlaps {hot['overlaps']})",
        flush=True,
    )


def summary(all_results: dict[str, list[dict[str, Any]]]) -> bool:
    ok = True
    print("\n== how the figures grow (p95, ms; HTTP in bookings/s) ==")
    header = (
        f"{'backend':<11}{'bookings':>11}{'avail':>8}{'free':>8}{'week':>8}{'week+1':>8}"
        f"{'http/s':>8}{'hot/s':>8}{'5xx':>5}{'overlap':>8}"
    )
    print(header)
    for backend, results in all_results.items():
        for f in results:
            print(
                f"{backend:<11}{f['rows']:>11,}{f['availability']['p95']:>8.2f}"
                f"{f['free']['p95']:>8.1f}{f['timeline']['p95']:>8.1f}"
                f"{f['timeline_ahead']['p95']:>8.1f}{f['http']['ok_per_s']:>8.0f}"
                f"{f['hot']['attempts_per_s']:>8.0f}"
                f"{f['http']['errors_5xx'] + f['hot']['errors_5xx']:>5}"
                f"{f['http']['overlaps'] + f['hot']['overlaps']:>8}"
            )
            checks = [
                f["availability"]["p95"] <= TARGETS["availability"],
                f["free"]["p95"] <= TARGETS["free"],
                f["timeline"]["p95"] <= TARGETS["timeline"],
                f["hot"]["errors_5xx"] == 0 and f["http"]["errors_5xx"] == 0,
                f["hot"]["overlaps"] == 0 and f["http"]["overlaps"] == 0,
            ]
            if backend == "postgresql":
                checks.append(f["http"]["ok_per_s"] >= TARGETS["http_pg"])
            ok = ok and all(checks)
    print(
        f"targets: availability <= {TARGETS['availability']} ms, free <= {TARGETS['free']} ms,"
        f" week <= {TARGETS['timeline']} ms, PostgreSQL HTTP >= {TARGETS['http_pg']:.0f}/s,"
        " no 5xx, no overlap"
    )
    print("all targets met" if ok else "SOME TARGETS MISSED")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--http-seconds", type=float, default=8.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="server processes (default: 1 on SQLite, one per core on PostgreSQL)",
    )
    parser.add_argument("--quick", action="store_true", help="10,000 bookings, short runs")
    parser.add_argument(
        "--no-gc-freeze", action="store_true", help="leave the start-up heap to the collector"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes = [10_000]
        args.http_seconds = min(args.http_seconds, 3.0)
    results = {b: run_backend(b, args) for b in args.backends}
    summary(results)


if __name__ == "__main__":
    main()
