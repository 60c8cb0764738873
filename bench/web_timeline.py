"""Benchmark the timeline page (not a test): the two-week view of 500 devices, server side.

Builds a temporary SQLite database: 500 devices (4 types, 2 sites, a tag on every tenth one),
16 users, and each device's history of about one booking a day (1 to 8 hours) from 60 days back
to 14 days ahead (past rows COMPLETED, some CANCELLED; current ACTIVE; future CONFIRMED, some
PENDING, a few waitlisted), plus a maintenance window on every 25th device. Then it renders
`GET /timeline?view=2weeks&limit=500` through the application in this process (Starlette's
TestClient: routing, dependencies, the session, the services and the template, no network) and
prints the median and p95 time and how many SQL statements one render runs. The same page for
50 and 500 devices is also counted, to show the count does not depend on the number of rows.

Target: p95 under 1000 ms for 500 devices, a fixed number of queries.

Usage: python bench/web_timeline.py [--devices 500] [--runs 20] [--days-back 60] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LABKEEPER_ENV", "development")

from bench._common import median, percentile  # noqa: E402

from labkeeper.admin import service as settings_service  # noqa: E402
from labkeeper.auth import service as auth_service  # noqa: E402
from labkeeper.auth.schemas import UserCreate  # noqa: E402
from labkeeper.booking.models import Booking  # noqa: E402
from labkeeper.core import migrate  # noqa: E402
from labkeeper.core.audit import SYSTEM  # noqa: E402
from labkeeper.core.db import Database, make_engine  # noqa: E402
from labkeeper.core.time import utcnow  # noqa: E402
from labkeeper.inventory.models import (  # noqa: E402
    Device,
    DeviceTag,
    DeviceType,
    MaintenanceWindow,
    Site,
    Tag,
)

TARGET_MS = 1000.0
USERS = 16
PASSWORD = "bench-password-1"


def populate(db: Database, devices: int, days_back: int) -> int:
    """Devices, users, bookings and maintenance; returns the number of bookings."""
    migrate.upgrade(db.engine)
    rng = random.Random(7)
    now = utcnow()
    with db.scope() as s:
        types = [
            DeviceType(name=n, category=c, is_schedulable=True)
            for n, c in (("roadm", "optical"), ("router", "infra"), ("server", "compute"))
        ]
        types.append(DeviceType(name="panel", category="optical", is_schedulable=False))
        sites = [Site(name="dublin"), Site(name="cork")]
        tag = Tag(name="core")
        s.add_all([*types, *sites, tag])
        s.flush()
        s.execute(
            insert(Device),
            [
                {
                    "name": f"dev-{i:04d}",
                    "device_type_id": types[0 if i % 40 else 3].id
                    if i % 3 == 0
                    else types[i % 3].id,
                    "site_id": sites[i % 2].id,
                }
                for i in range(devices)
            ],
        )
        ids = list(s.scalars(select(Device.id).order_by(Device.id)))
        s.execute(insert(DeviceTag), [{"device_id": d, "tag_id": tag.id} for d in ids[::10]])
        users = [
            auth_service.create_user(
                s,
                data=UserCreate(username=f"bench{i}", password=PASSWORD, role="member"),
                actor=SYSTEM,
                check_grant=False,
            ).id
            for i in range(USERS)
        ]
        rows = []
        for device in ids:
            cursor = now + timedelta(days=14)
            floor = now - timedelta(days=days_back)
            while cursor > floor:
                cursor -= timedelta(hours=rng.randint(8, 32))
                end = cursor.replace(minute=0, second=0, microsecond=0)
                start = end - timedelta(hours=rng.randint(1, 8))
                cursor = start
                if end <= now:
                    status = "COMPLETED" if rng.random() < 0.95 else "CANCELLED"
                elif start <= now:
                    status = "ACTIVE"
                else:
                    roll = rng.random()
                    status = "CONFIRMED" if roll < 0.8 else "PENDING" if roll < 0.97 else None
                    if status is None:  # a waitlisted request on top of a confirmed one
                        rows.append(_row(rng, device, users, start, end, "CONFIRMED"))
                        status = "CONFLICTING"
                rows.append(_row(rng, device, users, start, end, status))
        s.execute(insert(Booking), rows)
        s.execute(
            insert(MaintenanceWindow),
            [
                {
                    "device_id": d,
                    "start_time": now + timedelta(days=3 + i % 7),
                    "end_time": now + timedelta(days=3 + i % 7, hours=6),
                    "reason": "firmware upgrade",
                }
                for i, d in enumerate(ids[::25])
            ],
        )
        settings_service.put(s, key="general.lab_timezone", value="Europe/Dublin", actor=SYSTEM)
    return len(rows)


def _row(rng: random.Random, device: int, users: list[int], start, end, status: str) -> dict:
    return {
        "grouped_booking_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "device_id": device,
        "user_id": users[rng.randrange(len(users))],
        "start_time": start,
        "end_time": end,
        "status": status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--days-back", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="5 runs, 30 days of history")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.days_back = min(args.runs, 5), min(args.days_back, 30)

    from fastapi.testclient import TestClient

    from labkeeper.app import create_app
    from labkeeper.config import Settings

    with tempfile.TemporaryDirectory(prefix="labkeeper-bench-") as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        db = Database(make_engine(url))
        began = time.perf_counter()
        bookings = populate(db, args.devices, args.days_back)
        print(
            f"timeline page benchmark: {args.devices} devices, {bookings} bookings "
            f"(SQLite, built in {time.perf_counter() - began:.1f} s)"
        )
        settings = Settings(
            database_url=url, env="test", run_scheduler=False, login_rate_per_minute=10**6
        )
        app = create_app(settings, db=db, start_background=False)
        html = {"accept": "text/html"}
        with TestClient(app, base_url="http://127.0.0.1") as client:
            client.get("/login", headers=html)
            r = client.post(
                "/login",
                data={
                    "username": "bench0",
                    "password": PASSWORD,
                    "csrf_token": client.cookies.get("labkeeper_form"),
                },
                headers=html,
                follow_redirects=False,
            )
            assert r.status_code == 303, r.text[:300]

            statements: list[str] = []

            def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
                statements.append(statement)

            def render(path: str) -> tuple[float, int, int]:
                statements.clear()
                event.listen(db.engine, "before_cursor_execute", count)
                try:
                    t0 = time.perf_counter()
                    response = client.get(path, headers=html)
                    elapsed = (time.perf_counter() - t0) * 1000
                finally:
                    event.remove(db.engine, "before_cursor_execute", count)
                assert response.status_code == 200, response.status_code
                return elapsed, len(statements), response.text.count('class="tl-row"')

            full = f"/timeline?view=2weeks&limit={min(args.devices, 500)}"
            for _ in range(3):  # warm up: templates compiled, caches filled
                render(full)
            gc.collect()
            times = []
            for _ in range(args.runs):
                elapsed, queries, rows = render(full)
                times.append(elapsed)
            small_ms, small_queries, small_rows = render("/timeline?view=2weeks&limit=50")
            week_ms, week_queries, _ = render(f"/timeline?view=week&limit={min(args.devices, 500)}")
            filtered_ms, filtered_queries, filtered_rows = render(
                "/timeline?view=2weeks&limit=500&tag=core&site=dublin"
            )
        p50, p95 = median(times), percentile(times, 95)
        print(
            f"  two weeks, {rows} rows:   median {p50:7.1f} ms   p95 {p95:7.1f} ms   "
            f"{queries} queries   (target p95 < {TARGET_MS:.0f} ms: "
            f"{'met' if p95 < TARGET_MS else 'MISSED'})"
        )
        print(f"  two weeks, {small_rows} rows:    {small_ms:7.1f} ms   {small_queries} queries")
        print(f"  one week, {rows} rows:    {week_ms:7.1f} ms   {week_queries} queries")
        print(
            f"  filtered (tag+site), {filtered_rows} rows: {filtered_ms:7.1f} ms   "
            f"{filtered_queries} queries"
        )
        print(
            "  query count independent of rows: "
            + ("yes" if queries == small_queries == filtered_queries else "NO")
        )
        db.engine.dispose()


if __name__ == "__main__":
    main()
