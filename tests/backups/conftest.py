"""Helpers of the backups tests: simulated devices over real SSH, devices in the database, runs.

The simulator runs on an event loop of its own thread, so the code under test (a task run in
the test's thread, a CLI in a subprocess, worker processes) reaches it like a real device on
127.0.0.1, on ephemeral ports.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from labkeeper.admin import service as settings
from labkeeper.backups import service
from labkeeper.backups.schemas import CredentialCreate
from labkeeper.core.audit import SYSTEM
from labkeeper.core.db import Database
from labkeeper.inventory.models import Device, DeviceTag, DeviceType, Tag
from labkeeper.jobs.engine import run_job
from labkeeper.jobs.models import JobLog, JobLogEntry
from labkeeper.simulators.devices import DeviceFarm

API = "/api/v1"


class Farm:
    """A DeviceFarm served from a background event loop, driven from synchronous tests."""

    def __init__(self, count: int, platform: str = "cisco_ios", **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = DeviceFarm(count, platform, **options)
        self._call(self.sim.start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def do(self, fn: Any, *args: Any) -> Any:
        """Run a farm method on the farm's loop (devices are not shared across threads)."""

        async def call() -> Any:
            return fn(*args)

        return self._call(call())

    @property
    def ports(self) -> list[int]:
        return self.sim.ports

    def device(self, i: int) -> Any:
        return self.sim.device(i)

    def close(self) -> None:
        self._call(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def make_farm() -> Iterator[Any]:
    """`make_farm(count, platform, **DeviceFarm options)`; every farm stops after the test."""
    farms: list[Farm] = []

    def _make(count: int, platform: str = "cisco_ios", **options: Any) -> Farm:
        farm = Farm(count, platform, **options)
        farms.append(farm)
        return farm

    yield _make
    for farm in farms:
        farm.close()


@pytest.fixture
def quick(db: Database) -> None:
    """Short time limits and no retries, so failing devices fail fast."""
    with db.scope() as s:
        settings.put(s, key="backup.device_timeout_seconds", value=2, actor=SYSTEM)
        settings.put(s, key="backup.retries", value=0, actor=SYSTEM)


def add_devices(
    db: Database,
    farm: Farm | None,
    *,
    names: list[str] | None = None,
    tags: tuple[str, ...] = ("lab",),
    platform: str | None = None,
    ports: list[int | None] | None = None,
) -> list[int]:
    """Devices pointing at the farm's devices (or at given ports), tagged; their ids."""
    if ports is None:
        assert farm is not None
        ports = list(farm.ports)
    names = names or [f"dev{i}" for i in range(len(ports))]
    with db.scope() as s:
        kind = s.scalar(select(DeviceType).where(DeviceType.name == "router"))
        if kind is None:
            kind = DeviceType(name="router", category="infra")
            s.add(kind)
            s.flush()
        tag_rows = []
        for tag in tags:
            row = s.scalar(select(Tag).where(Tag.name == tag))
            if row is None:
                row = Tag(name=tag)
                s.add(row)
                s.flush()
            tag_rows.append(row)
        ids = []
        for i, (name, port) in enumerate(zip(names, ports, strict=True)):
            sim_platform = (
                farm.device(i).platform if farm is not None and i < len(farm.ports) else None
            )
            device = Device(
                name=name,
                device_type_id=kind.id,
                mgmt_address="127.0.0.1" if port else None,
                ssh_port=port or 22,
                platform=platform or sim_platform or "cisco_ios",
            )
            s.add(device)
            s.flush()
            for tag in tag_rows:
                s.add(DeviceTag(device_id=device.id, tag_id=tag.id))
            ids.append(device.id)
        return ids


def add_credential(
    db: Database,
    name: str,
    *,
    password: str = "admin",
    username: str = "admin",
    tags: dict[str, int] | None = None,
    enable_secret: str | None = None,
) -> int:
    """A credential linked to tags (created if need be) with priorities; its id."""
    tags = tags or {"lab": 100}
    with db.scope() as s:
        for tag in tags:
            if s.scalar(select(Tag).where(Tag.name == tag)) is None:
                s.add(Tag(name=tag))
        s.flush()
        row = service.create_credential(
            s,
            data=CredentialCreate(
                name=name,
                username=username,
                password=password,
                enable_secret=enable_secret,
                tags=[{"tag": t, "priority": p} for t, p in tags.items()],
            ),
            actor=SYSTEM,
        )
        return row.id


def backup_now(db: Database, **params: Any) -> JobLog:
    """Queue a backup run and execute it in this thread, as a worker would; the finished run."""
    with db.scope() as s:
        run_id = service.start_backup(s, actor=SYSTEM, **params).id
    run_job(db, run_id)
    with db.scope(write=False) as s:
        run = s.get(JobLog, run_id)
        assert run is not None
        return run


def device_entries(db: Database, run_id: int) -> dict[int, JobLogEntry]:
    """The per-device entries of a run, by device id (asserting one each)."""
    with db.scope(write=False) as s:
        rows = list(
            s.scalars(
                select(JobLogEntry).where(
                    JobLogEntry.job_log_id == run_id, JobLogEntry.category == "device"
                )
            )
        )
    by_device = {r.device_id: r for r in rows}
    assert len(by_device) == len(rows), "a device has two result entries"
    return by_device


@dataclass
class Api:
    """The test client with a token, and a shortcut that asserts the status."""

    client: TestClient
    headers: dict[str, str]

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        r = self.client.request(method, API + path, headers=self.headers, **kwargs)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r


@pytest.fixture
def api(client: TestClient, admin: Any) -> Api:
    """The API as an admin."""
    return Api(client, admin.headers)
