"""Health checks against real sockets on 127.0.0.1: up/down, latency, status changes, snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from sqlalchemy import select

from labkeeper.admin import service as settings_service
from labkeeper.core.audit import SYSTEM
from labkeeper.inventory import tasks
from labkeeper.inventory.models import DeviceHistory
from labkeeper.jobs import registry
from labkeeper.jobs import service as jobs
from labkeeper.jobs.engine import run_job
from labkeeper.jobs.models import JobLog


class Listener:
    """A TCP server on 127.0.0.1 that accepts and closes connections until stopped."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        # Connections the kernel completed but the thread had not accepted yet count too.
        self.sock.setblocking(False)
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                break
            self.accepted += 1
            conn.close()
        self.sock.close()


@contextlib.contextmanager
def listening(port: int = 0) -> Iterator[Listener]:
    server = Listener(port)
    try:
        yield server
    finally:
        server.close()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_check_marks_devices_up_and_down_and_moves_status(api, db):
    api.device_type()
    with db.scope() as s:
        settings_service.put(s, key="health.timeout_seconds", value=1.0, actor=SYSTEM)
    with listening() as server:
        up = api.device("up", mgmt_address="127.0.0.1", ssh_port=server.port)
        down = api.device("down", mgmt_address="127.0.0.1", ssh_port=closed_port())
        kept = api.device(
            "kept", mgmt_address="127.0.0.1", ssh_port=closed_port(), status="maintenance"
        )
        api.device("no-address")
        first = tasks.check_health(db)
        assert server.accepted >= 1
    assert (first["probed"], first["up"], first["down"]) == (3, 1, 2)
    assert first["went_down"] == [down["id"]] and first["came_back"] == []

    got = api.ok(api.get(f"/devices/{up['id']}"))
    assert got["reachability"] == "up" and got["status"] == "available"
    assert got["last_seen_at"] is not None and 0 <= got["last_latency_ms"] < 1000
    lost = api.ok(api.get(f"/devices/{down['id']}"))
    assert lost["reachability"] == "down" and lost["status"] == "unavailable"
    assert lost["last_seen_at"] is None
    # Statuses set by people (maintenance, retired, offline) are left alone.
    assert api.ok(api.get(f"/devices/{kept['id']}"))["status"] == "maintenance"

    snap = api.ok(api.get(f"/devices/{down['id']}/health"))["items"]
    assert len(snap) == 1 and snap[0]["status"] == "down" and snap[0]["heartbeat_at"] is None
    assert snap[0]["metrics"]["error"] and snap[0]["metrics"]["port"] == down["ssh_port"]
    ok_snap = api.ok(api.get(f"/devices/{up['id']}/health"))["items"][0]
    assert (
        ok_snap["status"] == "up" and ok_snap["latency_ms"] is not None and ok_snap["heartbeat_at"]
    )

    # The server goes away: the device that answered becomes unavailable...
    second = tasks.check_health(db)
    assert second["went_down"] == [up["id"]]
    assert api.ok(api.get(f"/devices/{up['id']}"))["status"] == "unavailable"
    # ...and comes back when it answers again on the same port.
    with listening(up["ssh_port"]):
        third = tasks.check_health(db)
    assert third["came_back"] == [up["id"]]
    back = api.ok(api.get(f"/devices/{up['id']}"))
    assert back["status"] == "available" and back["reachability"] == "up"

    page = api.ok(api.get(f"/devices/{up['id']}/health", params={"limit": 2}))
    assert page["total"] == 3 and [s["status"] for s in page["items"]] == ["up", "down"]
    with db.scope(write=False) as s:
        moves = [
            (h.old_value, h.new_value, h.changed_by)
            for h in s.scalars(
                select(DeviceHistory)
                .where(DeviceHistory.device_id == up["id"], DeviceHistory.field == "status")
                .order_by(DeviceHistory.id)
            )
        ]
    assert moves == [("available", "unavailable", None), ("unavailable", "available", None)]
    history = api.ok(api.get(f"/devices/{up['id']}/history"))["items"]
    assert history[0]["field"] == "status" and history[0]["changed_by_username"] is None


def test_periodic_task_is_registered_and_probes_concurrently(api, db):
    assert "inventory.health" in registry.PERIODIC
    with db.scope(write=False) as s:
        every = registry.PERIODIC["inventory.health"].interval(s)
    assert every.total_seconds() == 300  # the health.interval_seconds default
    with db.scope() as s:
        settings_service.put(s, key="health.interval_seconds", value=60, actor=SYSTEM)
        settings_service.put(s, key="health.concurrency", value=5, actor=SYSTEM)
    with db.scope(write=False) as s:
        assert registry.PERIODIC["inventory.health"].interval(s).total_seconds() == 60

    api.device_type()
    with listening() as server:
        ids = [
            api.device(f"d{i}", mgmt_address="127.0.0.1", ssh_port=server.port)["id"]
            for i in range(12)
        ]
        with db.scope() as s:
            run_id = jobs.enqueue(s, "inventory.health", params={"device_ids": ids[:10]}).id
        assert run_job(db, run_id) == "succeeded"
    with db.scope(write=False) as s:
        run = s.get(JobLog, run_id)
        assert (run.total, run.done) == (10, 10)
        assert run.result["up"] == 10 and run.message == "10 up, 0 down"
    assert server.accepted == 10
    states = {d["id"]: d["reachability"] for d in api.ok(api.get("/devices"))["items"]}
    assert [states[i] for i in ids] == ["up"] * 10 + ["unknown"] * 2


def test_probes_run_concurrently_within_the_bound():
    # A listener whose accept queue is full drops new SYNs: connects hang until the timeout.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(0)
        port = black_hole.getsockname()[1]
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.3),
        ):
            targets = [(i, "127.0.0.1", port) for i in range(6)]
            started = time.perf_counter()
            results = asyncio.run(tasks.probe_all(targets, timeout=0.3, concurrency=6))
            together = time.perf_counter() - started
            started = time.perf_counter()
            asyncio.run(tasks.probe_all(targets, timeout=0.3, concurrency=2))
            in_threes = time.perf_counter() - started
    assert [r.up for r in results] == [False] * 6
    assert all("no answer within 0.3 s" in (r.error or "") for r in results)
    assert together < 0.6 and in_threes >= 0.85, (together, in_threes)
