"""CPU per request: what each hot request costs the server, in CPU time rather than wall time.

Requests per second on a shared 2-core machine vary by 20-30 % from one minute to the next;
CPU time per request does not, so this is the figure to compare when changing the hot paths.
The app is called in-process as ASGI (no sockets, no client) in a loop, on uvloop as under
`labkeeper serve`. For PostgreSQL it also reads the server processes' CPU from /proc.

    python bench/request_cost.py [--requests 2000] [--backends sqlite,postgresql] [--quick]
                                 [--only TEXT] [--profile PATH] [--instructions]

"ceiling" is what two cores could serve if the request were all there is (2 s of CPU per
second divided by the cost): the load client, the network and the kernel come on top.
Each figure is the least of three rounds. `--profile` writes a cProfile of the measured calls
(view with `python -m pstats PATH`).

`--instructions` counts the Python process's instructions per request under valgrind's
callgrind instead (100 requests each; a few minutes): the same count on every run, whatever
else the machine does, so a change worth 2 % shows. It needs valgrind and gcc.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ctypes
import gc
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("LABKEEPER_ENV", "development")
os.environ.setdefault("LABKEEPER_LOG_LEVEL", "WARNING")

import uvloop  # noqa: E402
from _common import add_devices, database, pg_available  # noqa: E402

from labkeeper.admin import service as settings_service  # noqa: E402
from labkeeper.app import create_app  # noqa: E402
from labkeeper.auth import service as auth_service  # noqa: E402
from labkeeper.auth.schemas import TokenCreate, UserCreate  # noqa: E402
from labkeeper.config import Settings  # noqa: E402
from labkeeper.core import migrate  # noqa: E402
from labkeeper.core.audit import SYSTEM  # noqa: E402
from labkeeper.core.db import Database, make_engine  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
ROUNDS = 3
# Under callgrind: the helper library that switches counting on and off, and dumps a count.
CALLGRIND_ENV = "LABKEEPER_BENCH_CALLGRIND"
CALLGRIND_HELPER = """
#include <valgrind/callgrind.h>
void lk_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void lk_stop(const char *label) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT(label); }
"""


def populate(db: Database) -> tuple[str, list[int]]:
    """An admin with a token, 59 more users, 200 bookable devices; the admin's token."""
    migrate.upgrade(db.engine)
    with db.scope() as s:
        devices = add_devices(s, 200)
        admin = auth_service.create_user(
            s,
            data=UserCreate(username="bench", password="load-test-pw-42", role="admin"),
            actor=SYSTEM,
            check_grant=False,
        )
        for i in range(59):
            auth_service.create_user(
                s,
                data=UserCreate(username=f"user{i:02d}", password="load-test-pw-42"),
                actor=SYSTEM,
                check_grant=False,
            )
        _, token = auth_service.create_token(
            s, principal=SYSTEM, data=TokenCreate(name="bench"), user_id=admin.id
        )
        settings_service.put(s, key="booking.max_active_per_user", value=10**9, actor=SYSTEM)
    return token, devices


def server_cpu(dbname: str | None) -> float:
    """CPU seconds used so far by the PostgreSQL processes serving `dbname` (0 for SQLite)."""
    if dbname is None:
        return 0.0
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not cmdline.startswith(b"postgres: ") or f" {dbname} ".encode() not in cmdline:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


class Caller:
    """Calls the app as ASGI, as uvicorn would for one keep-alive connection."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.label = ""
        self.headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"user-agent", b"bench"),
        ]

    async def __call__(self, method: str, path: str, body: Any = None) -> int:
        raw = b"" if body is None else json.dumps(body).encode()
        path, _, query = path.partition("?")
        headers = list(self.headers)
        if raw:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(raw)),
            ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        status = 0
        sent = False
        self.body = b""

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                self.body += message.get("body", b"")

        await self.app(scope, receive, send)
        return status


def measure(
    call: Caller,
    loop: asyncio.AbstractEventLoop,
    make: Callable[[int], tuple[str, str, Any]],
    count: int,
    dbname: str | None,
    expect: int,
    profile: cProfile.Profile | None,
) -> tuple[float, float]:
    """Python and database CPU ms per request over `count` calls (after 50 warm-up calls):
    the least of `ROUNDS` rounds, as other work on the machine only ever adds to it."""

    async def run(n: int, offset: int) -> None:
        for i in range(n):
            status = await call(*make(offset + i))
            if status != expect:
                raise RuntimeError(f"{make(offset + i)[:2]} answered {status}: {call.body!r}")

    loop.run_until_complete(run(50, 0))
    if os.environ.get(CALLGRIND_ENV):
        helper = ctypes.CDLL(os.environ[CALLGRIND_ENV])
        gc.collect()
        gc.disable()  # a collection would land in one run's count and not another's
        helper.lk_start()
        loop.run_until_complete(run(count, 50))
        helper.lk_stop(f"{call.label} {count}".encode())
        gc.enable()
        return 0.0, 0.0
    best = (float("inf"), float("inf"))
    for round_ in range(ROUNDS):
        gc.collect()
        db0, py0 = server_cpu(dbname), time.process_time()
        if profile:
            profile.enable()
        loop.run_until_complete(run(count, 50 + round_ * count))
        if profile:
            profile.disable()
        py, db = time.process_time() - py0, server_cpu(dbname) - db0
        best = min(best, (py * 1000 / count, db * 1000 / count))
    return best


def bench_backend(
    backend: str, count: int, profile: cProfile.Profile | None, only: str
) -> list[Any]:
    with database(backend) as url:
        db = Database(make_engine(url))
        token, devices = populate(db)
        settings = Settings(database_url=url, log_level="WARNING")
        app = create_app(settings, db, start_background=False)
        call = Caller(app, token)
        dbname = url.rsplit("/", 1)[1] if backend == "postgresql" else None
        rng = random.Random(1)
        base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
        taken: set[tuple[int, int]] = set()

        def booking(i: int) -> tuple[str, str, Any]:
            while True:
                device, hour = rng.choice(devices), rng.randrange(24 * 80)
                if (device, hour) not in taken:
                    taken.add((device, hour))
                    break
            start = base + timedelta(hours=hour)
            item = {
                "device_id": device,
                "start": start.isoformat(),
                "end": (start + timedelta(hours=1)).isoformat(),
            }
            return "POST", "/api/v1/bookings", {"items": [item]}

        cases: list[tuple[str, Callable[[int], tuple[str, str, Any]], int]] = [
            ("GET /healthz", lambda i: ("GET", "/healthz", None), 200),
            ("GET /auth/me", lambda i: ("GET", "/api/v1/auth/me", None), 200),
            ("GET /users?limit=50", lambda i: ("GET", "/api/v1/users?limit=50", None), 200),
            ("GET /devices?limit=50", lambda i: ("GET", "/api/v1/devices?limit=50", None), 200),
            ("POST /bookings", booking, 201),
        ]
        loop = uvloop.new_event_loop()
        results = []
        try:
            for name, make, expect in cases:
                if only not in name:
                    continue
                call.label = f"{backend} {name}"
                py, dbms = measure(call, loop, make, count, dbname, expect, profile)
                results.append((name, py, dbms))
        finally:
            loop.close()
            db.dispose()
        return results


def instructions(args: argparse.Namespace) -> None:
    """Run this benchmark under callgrind and print instructions per request."""
    if not (shutil.which("valgrind") and shutil.which("gcc")):
        print("--instructions needs valgrind and gcc; skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        helper = Path(tmp, "helper.so")
        source = Path(tmp, "helper.c")
        source.write_text(CALLGRIND_HELPER)
        built = subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", str(helper), str(source)],
            capture_output=True,
            text=True,
        )
        if built.returncode:
            print(
                f"--instructions: could not build the callgrind helper (valgrind headers?):\n"
                f"{built.stderr.strip()}"
            )
            return
        child = [
            sys.executable, __file__, "--requests", str(args.requests or 100),
            "--backends", args.backends, "--only", args.only,
        ]  # fmt: skip
        env = {**os.environ, CALLGRIND_ENV: str(helper), "PYTHONHASHSEED": "0"}
        env["PYTHONMALLOC"] = "malloc"  # valgrind sees each allocation; pymalloc hides them
        out = Path(tmp, "callgrind.out.%p")
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             *child],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if run.returncode:
            print(run.stdout[-2000:], run.stderr[-2000:])
            raise SystemExit("the run under callgrind failed")
        counts = []
        dumps = Path(tmp).glob("callgrind.out.*")
        for dump in sorted(dumps, key=lambda d: int(d.suffix[1:]) if d.suffix[1:].isdigit() else 0):
            text = dump.read_text(errors="replace")
            label = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
            total = re.search(r"^totals: (\d+)", text, re.M)
            if label and total:
                *name, n = label.group(1).split()
                counts.append((" ".join(name), int(total.group(1)) / int(n)))
    print(f"labkeeper instructions per request (callgrind), {args.requests or 100} requests each")
    print(f"{'backend':<11} {'request':<22} {'instructions':>14}")
    for name, per_request in counts:
        backend, request = name.split(" ", 1)
        print(f"{backend:<11} {request:<22} {per_request / 1e6:>13.2f}M")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=None, help="per request (2000)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="500 requests each")
    parser.add_argument("--profile", help="write a cProfile of the measured calls here")
    parser.add_argument("--only", default="", help="only the requests whose name contains this")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind"
    )
    args = parser.parse_args()
    if args.instructions:
        instructions(args)
        return
    count = args.requests or (500 if args.quick else 2000)
    profile = cProfile.Profile(time.process_time) if args.profile else None
    if os.environ.get(CALLGRIND_ENV):
        profile = None
    else:
        print(f"labkeeper CPU per request, in-process ASGI, {count} requests each")
        print(
            f"{'backend':<11} {'request':<22} {'python ms':>10} {'db ms':>7} {'ceiling req/s':>14}"
        )
    for backend in args.backends.split(","):
        if backend == "postgresql" and not pg_available():
            print(f"{backend:<11} skipped: PostgreSQL is not reachable on 127.0.0.1:5432")
            continue
        for name, py, dbms in bench_backend(backend, count, profile, args.only):
            if os.environ.get(CALLGRIND_ENV):
                continue
            ceiling = 2000 / (py + dbms)
            db_text = f"{dbms:>7.2f}" if backend == "postgresql" else f"{'-':>7}"
            print(f"{backend:<11} {name:<22} {py:>10.2f} {db_text} {ceiling:>14.0f}")
    if profile and args.profile:
        profile.dump_stats(args.profile)
        print(f"profile written to {args.profile}")


if __name__ == "__main__":
    main()
