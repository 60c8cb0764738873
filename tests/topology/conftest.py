"""Helpers of the topology tests: a lab patched into one optical switch, the switch simulator,
and bookings moved through their lifecycle by the booking service itself."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from labkeeper.admin import service as settings_service
from labkeeper.backups.models import Credential, CredentialTag
from labkeeper.booking import service as bookings
from labkeeper.core.audit import SYSTEM
from labkeeper.core.db import Database
from labkeeper.core.security import encrypt
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device, DeviceTag, DeviceType, Tag
from labkeeper.simulators.polatis import PolatisSimulator
from labkeeper.topology.models import CrossConnect

API = "/api/v1"
SWITCH = "sw1"


def in_port(k: int) -> int:
    """Switch port that feeds device k's input (its egress on the switch)."""
    return 2 * k - 1


def out_port(k: int) -> int:
    """Switch port that device k's output feeds (its ingress on the switch)."""
    return 2 * k


@dataclass
class Lab:
    """Devices d1..dN patched into switch sw1 (device k: in 2k-1, out 2k), the switch device
    itself, a device on another switch and one that cannot be booked."""

    ids: dict[str, int]
    switch_id: int
    type_id: int
    extra: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        return self.ids[name]


def make_lab(db: Database, count: int = 8, *, sim_port: int = 1) -> Lab:
    """The lab, inserted straight into the database (with approval off: bookings confirm)."""
    with db.scope() as s:
        server = DeviceType(name="server", category="compute", is_schedulable=True, has_ports=True)
        switch_type = DeviceType(
            name="polatis", category="optical", is_schedulable=False, platform="polatis"
        )
        fixed = DeviceType(name="rack-pdu", category="infra", is_schedulable=False)
        s.add_all([server, switch_type, fixed])
        s.flush()
        switch = Device(
            name=SWITCH, device_type_id=switch_type.id, mgmt_address="127.0.0.1", ssh_port=sim_port
        )
        devices = [
            Device(
                name=f"d{k}",
                device_type_id=server.id,
                switch_name=SWITCH,
                switch_in_port=in_port(k),
                switch_out_port=out_port(k),
            )
            for k in range(1, count + 1)
        ]
        far = Device(
            name="far",
            device_type_id=server.id,
            switch_name="sw2",
            switch_in_port=1,
            switch_out_port=2,
        )
        loose = Device(name="loose", device_type_id=server.id)
        pdu = Device(name="pdu", device_type_id=fixed.id, switch_name=SWITCH, switch_in_port=99)
        s.add_all([switch, *devices, far, loose, pdu])
        s.flush()
        tag = Tag(name="optical")
        credential = Credential(
            name="polatis-admin", username="admin", password_enc=encrypt("admin")
        )
        s.add_all([tag, credential])
        s.flush()
        s.add(DeviceTag(device_id=switch.id, tag_id=tag.id))
        s.add(CredentialTag(credential_id=credential.id, tag_id=tag.id, priority=10))
        settings_service.put(s, key="approval.mode", value="auto", actor=SYSTEM)
        settings_service.put(s, key="optical.timeout_seconds", value=2, actor=SYSTEM)
        return Lab(
            ids={d.name: d.id for d in devices},
            switch_id=switch.id,
            type_id=server.id,
            extra={"far": far.id, "loose": loose.id, "pdu": pdu.id},
        )


@pytest.fixture
def lab(db: Database) -> Lab:
    return make_lab(db)


@pytest.fixture
def sim(db: Database, lab: Lab) -> Iterator[PolatisSimulator]:
    """A 64-port switch simulator the lab's switch device points at."""
    simulator = PolatisSimulator(ports=64)
    with simulator.run_in_thread():
        with db.scope() as s:
            s.get(Device, lab.switch_id).ssh_port = simulator.port  # type: ignore[union-attr]
        yield simulator


def node(name: str, lab: Lab, **extra: Any) -> dict[str, Any]:
    device = lab.ids.get(name) or lab.extra[name]
    return {"id": name, "device_id": device, "kind": "server", "x": 10.0, "y": 20.0, **extra}


def edge(eid: str, source: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"id": eid, "source": source, "target": target, **extra}


def chain(lab: Lab, names: list[str]) -> dict[str, Any]:
    """Nodes for `names` and edges joining each to the next (e1, e2, ...)."""
    return {
        "nodes": [node(n, lab) for n in names],
        "edges": [edge(f"e{i + 1}", a, b) for i, (a, b) in enumerate(itertools.pairwise(names))],
    }


@dataclass
class Api:
    """The test client as one user."""

    client: TestClient
    headers: dict[str, str]

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(API + path, headers=self.headers, **kwargs)

    def post(self, path: str, json: Any = None) -> Any:
        return self.client.post(API + path, json=json, headers=self.headers)

    def patch(self, path: str, json: Any = None) -> Any:
        return self.client.patch(API + path, json=json, headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(API + path, headers=self.headers)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    return body


@pytest.fixture
def as_user(client: TestClient) -> Any:
    def _as(account: Any) -> Api:
        return Api(client, account.headers)

    return _as


def window(hours_from_now: float = 24, length: float = 2) -> tuple[str, str]:
    start = (utcnow() + timedelta(hours=hours_from_now)).replace(microsecond=0)
    return start.isoformat(), (start + timedelta(hours=length)).isoformat()


def start_now(db: Database, gid: str) -> None:
    """Let the booking lifecycle start a group whose start has come (as its job does)."""
    with db.scope() as s:
        bookings.start_due(s)
    assert group_status(db, gid) == "ACTIVE"


def end_now(db: Database, gid: str) -> None:
    """Let the lifecycle complete a group as if its end had passed."""
    with db.scope() as s:
        bookings.complete_due(s, now=utcnow() + timedelta(days=30))
    assert group_status(db, gid) == "COMPLETED"


def group_status(db: Database, gid: str) -> str:
    from labkeeper.booking.models import Booking

    with db.scope(write=False) as s:
        return bookings.group_status(
            s.scalars(select(Booking.status).where(Booking.grouped_booking_id == gid))
        )


def patches(db: Database, gid: str | None = None) -> list[CrossConnect]:
    """Patch rows (of a group), by id."""
    with db.scope(write=False) as s:
        stmt = select(CrossConnect).order_by(CrossConnect.id)
        if gid is not None:
            stmt = stmt.where(CrossConnect.grouped_booking_id == gid)
        return list(s.scalars(stmt))


def soon() -> datetime:
    """A start that counts as now for the booking rules (one minute ago)."""
    return utcnow() - timedelta(minutes=1)


def run_task(db: Database, name: str) -> tuple[Any, list[Any]]:
    """Run a task through the jobs engine in this thread; the run and its log entries."""
    from labkeeper.jobs import service as jobs
    from labkeeper.jobs.engine import run_job
    from labkeeper.jobs.models import JobLog, JobLogEntry

    with db.scope() as s:
        run_id = jobs.enqueue(s, name, params={}).id
    run_job(db, run_id)
    with db.scope(write=False) as s:
        run = s.get(JobLog, run_id)
        entries = list(
            s.scalars(
                select(JobLogEntry).where(JobLogEntry.job_log_id == run_id).order_by(JobLogEntry.id)
            )
        )
    return run, entries


def book_topology(api: Api, lab: Lab, names: list[str], hours: float = 2) -> tuple[int, str]:
    """Draw a chain of devices and book it from now; (topology id, group id)."""
    tid = ok(api.post("/topologies", {"name": "chain", **chain(lab, names)}), 201)["id"]
    end = (utcnow() + timedelta(hours=hours)).isoformat()
    gid = ok(api.post(f"/topologies/{tid}/book", {"start": soon().isoformat(), "end": end}), 201)[
        "grouped_booking_id"
    ]
    return tid, gid


@pytest.fixture(autouse=True)
def _quick_netconf(monkeypatch: pytest.MonkeyPatch) -> None:
    """ncclient sends a queued request only when its 0.1 s select tick ends: every request of a
    provisioning pass waits for it. A shorter tick keeps these tests quick; behaviour is the
    same, only sooner (bench/optical.py measures with the real tick)."""
    import ncclient.transport.session

    monkeypatch.setattr(ncclient.transport.session, "TICK", 0.005)
