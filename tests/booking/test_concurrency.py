"""No double booking under any concurrency: many clients over real HTTP (uvicorn on
127.0.0.1), groups racing over shared devices, a real deadlock retried inside the service, and
PostgreSQL's exclusion constraint answered as the same 409."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, insert, select

from labkeeper.admin.models import AuditLog
from labkeeper.booking import repository, service
from labkeeper.booking.models import Booking
from labkeeper.booking.schemas import BookingCreate
from labkeeper.inventory.models import Device
from tests.booking.conftest import at, item, overlapping_holding_pairs, principal

CLIENTS = 32


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run the app under uvicorn in a thread on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def fire(base: str, requests: list[tuple[dict[str, str], dict[str, Any]]]) -> list[Any]:
    """POST /bookings from one thread per request, all released at once."""
    barrier = threading.Barrier(len(requests))

    def one(i: int) -> tuple[int, Any]:
        headers, body = requests[i]
        with httpx.Client(base_url=base, timeout=60) as c:
            c.get("/healthz")  # connect before the barrier, so the posts really race
            barrier.wait()
            r = c.post("/api/v1/bookings", json=body, headers=headers)
        return r.status_code, r.json()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, range(len(requests))))


@pytest.mark.slow
def test_racing_clients_over_http_never_double_book(app, db, lab, make_user):
    people = [make_user("member") for _ in range(4)]
    devices = lab.devices
    rng = random.Random(7)
    with serving(app) as base:
        # 1. Thirty-two clients, one device, overlapping times: exactly one wins.
        same = [
            (people[i % 4].headers, {"items": [item(devices[0], 0 + i / 100, 2 + i / 100)]})
            for i in range(CLIENTS)
        ]
        results = fire(base, same)
        codes = sorted(code for code, _ in results)
        assert codes == [201] + [409] * (CLIENTS - 1), codes
        assert {body["error"]["code"] for code, body in results if code == 409} == {
            "booking_conflict"
        }

        # 2. Groups of three devices, in random orders, racing over six devices.
        groups = []
        for i in range(CLIENTS):
            chosen = rng.sample(devices, 3)
            groups.append((people[i % 4].headers, {"items": [item(d, 10, 12) for d in chosen]}))
        results = fire(base, groups)
        assert all(code in (201, 409) for code, _ in results), [c for c, _ in results]
        winners = [body for code, body in results if code == 201]
        assert 1 <= len(winners) <= 2
        taken: set[int] = set()
        for body in winners:
            mine = {b["device_id"] for b in body["bookings"]}
            assert len(mine) == 3 and not (mine & taken)
            taken |= mine

        # 3. The waitlist under a race: one holds, everyone else waits in line.
        waiting = [
            (people[i % 4].headers, {"items": [item(devices[5], 20, 21)], "waitlist": True})
            for i in range(CLIENTS)
        ]
        results = fire(base, waiting)
        assert [code for code, _ in results] == [201] * CLIENTS
        assert sorted(body["status"] for _, body in results) == ["CONFIRMED"] + ["CONFLICTING"] * (
            CLIENTS - 1
        )

    assert overlapping_holding_pairs(db) == 0
    with db.scope(write=False) as s:
        per_group = dict(
            s.execute(
                select(Booking.grouped_booking_id, func.count())
                .where(Booking.start_time == at(10))
                .group_by(Booking.grouped_booking_id)
            ).all()
        )
        assert sorted(per_group.values()) == [3] * len(winners)  # no partial groups
        assert s.scalar(select(func.count()).select_from(Booking)) == 1 + 3 * len(winners) + CLIENTS


def _deadlock(db, first: int, second: int, *, write_first: bool) -> tuple[int, list[Any]]:
    """Make `locked(work)` deadlock with another transaction on its first attempt; returns
    how many attempts `work` made and what `locked` raised, if anything."""
    locked_first = threading.Event()
    other_ready = threading.Event()
    attempts: list[int] = []
    errors: list[BaseException] = []
    raised: list[Any] = []

    def other() -> None:
        # Takes `second`, then wants `first`: the opposite order, the classic deadlock.
        try:
            with db.scope() as s:
                # Weigh this transaction down so InnoDB picks the service's as the victim.
                s.execute(
                    insert(AuditLog),
                    [{"action": "test.weight", "entity_type": "test"} for _ in range(50)],
                )
                assert locked_first.wait(10)
                s.execute(select(Device.id).where(Device.id == second).with_for_update())
                other_ready.set()
                time.sleep(0.3)  # let the service wait on `second` first
                s.execute(select(Device.id).where(Device.id == first).with_for_update())
        except BaseException as exc:  # reported below
            errors.append(exc)
            other_ready.set()

    def work() -> str:
        attempts.append(1)
        repository.lock_devices(session, [first])
        if len(attempts) == 1:
            locked_first.set()
            assert other_ready.wait(10)
        repository.lock_devices(session, [second])
        return "done"

    thread = threading.Thread(target=other)
    thread.start()
    try:
        with db.scope() as session:
            if write_first:
                session.add(AuditLog(action="test.before", entity_type="test"))
                session.flush()
            assert service.locked(session, work) == "done"
    except Exception as exc:
        raised.append(exc)
        locked_first.set()
    thread.join(20)
    assert not errors, errors
    return len(attempts), raised


def test_a_real_deadlock_is_retried_inside_the_service(db, lab):
    if db.backend == "sqlite":
        pytest.skip("SQLite writers queue on one lock and cannot deadlock")
    first, second = lab.devices[:2]
    # Nothing written yet (a booking request): the transaction starts over and goes through.
    attempts, raised = _deadlock(db, first, second, write_first=False)
    assert (attempts, raised) == (2, [])

    # Written before: PostgreSQL retries in a savepoint and keeps the earlier write;
    # MariaDB lost it with the transaction, so it says so instead of committing half.
    attempts, raised = _deadlock(db, lab.devices[2], lab.devices[3], write_first=True)
    with db.scope(write=False) as s:
        kept = s.scalar(select(func.count()).where(AuditLog.action == "test.before"))
    if db.backend == "postgresql":
        assert (attempts, raised, kept) == (2, [], 1)
    else:
        assert attempts == 1 and len(raised) == 1 and kept == 0
        assert "deadlock" in str(raised[0]).lower()


def test_postgresql_exclusion_constraint_is_the_same_409(db, lab, make_user):
    if db.backend != "postgresql":
        pytest.skip("the exclusion constraint exists on PostgreSQL only")
    alice, bob = make_user("member"), make_user("member")
    device = lab.devices[0]
    inserted = threading.Event()
    release = threading.Event()

    def bypass() -> None:
        # A writer that skips the device locks (an import script, say) holds an overlapping
        # row uncommitted while the service checks and inserts.
        with db.scope() as s:
            s.add(
                Booking(
                    grouped_booking_id="bypass",
                    device_id=device,
                    user_id=bob.id,
                    start_time=at(0),
                    end_time=at(2),
                    status="CONFIRMED",
                )
            )
            s.flush()
            inserted.set()
            release.wait(10)

    thread = threading.Thread(target=bypass)
    thread.start()
    assert inserted.wait(10)
    threading.Timer(0.5, release.set).start()
    from labkeeper.core.errors import Conflict

    with pytest.raises(Conflict) as caught, db.scope() as s:
        service.create(
            s,
            data=BookingCreate.model_validate({"items": [item(device, 1, 3)]}),
            actor=principal(alice),
        )
    thread.join(10)
    assert caught.value.code == "booking_conflict"
    (conflict,) = caught.value.details["conflicts"]
    assert conflict["grouped_booking_id"] == "bypass"
    assert overlapping_holding_pairs(db) == 0
