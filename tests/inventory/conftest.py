"""Helpers of the inventory tests: an admin API client and direct inserts for bulk data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from labkeeper.core.db import Database
from labkeeper.inventory.models import Device, DeviceType


@dataclass
class Api:
    """The test client with an admin's token, and shortcuts that assert success."""

    client: TestClient
    headers: dict[str, str]

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get("/api/v1" + path, headers=self.headers, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.client.post("/api/v1" + path, json=json, headers=self.headers, **kwargs)

    def put(self, path: str, json: Any = None) -> Any:
        return self.client.put("/api/v1" + path, json=json, headers=self.headers)

    def patch(self, path: str, json: Any = None) -> Any:
        return self.client.patch("/api/v1" + path, json=json, headers=self.headers)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.client.delete("/api/v1" + path, headers=self.headers, **kwargs)

    def ok(self, response: Any, status: int = 200) -> Any:
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def device_type(self, name: str = "router", category: str = "infra", **extra: Any) -> Any:
        body = {"name": name, "category": category, "is_schedulable": True, "has_ports": False}
        return self.ok(self.post("/device-types", {**body, **extra}), 201)

    def device(self, name: str, device_type: str = "router", **extra: Any) -> Any:
        return self.ok(
            self.post("/devices", {"name": name, "device_type": device_type, **extra}), 201
        )

    def tag(self, name: str, **extra: Any) -> Any:
        return self.ok(self.post("/tags", {"name": name, **extra}), 201)

    def site(self, name: str) -> Any:
        return self.ok(self.post("/sites", {"name": name}), 201)

    def rule(self, tag: str, rule: dict[str, Any], name: str = "r") -> Any:
        return self.ok(self.post("/tag-rules", {"tag": tag, "name": name, "rule": rule}), 201)

    def tags_of(self, device_id: int) -> dict[str, str]:
        """{tag name: source} of a device."""
        device = self.ok(self.get(f"/devices/{device_id}"))
        return {t["name"]: t["source"] for t in device["tags"]}


@pytest.fixture
def api(client: TestClient, admin: Any) -> Api:
    """The API as an admin."""
    return Api(client, admin.headers)


def insert_devices(
    db: Database, count: int, *, type_name: str = "bulk", start: int = 0
) -> list[int]:
    """Insert devices straight into the database (fast bulk data); their ids."""
    with db.scope() as s:
        dtype = s.query(DeviceType).filter_by(name=type_name).one_or_none()
        if dtype is None:
            dtype = DeviceType(name=type_name, category="compute")
            s.add(dtype)
            s.flush()
        devices = [
            Device(
                name=f"{type_name}-{i:04d}",
                device_type_id=dtype.id,
                mgmt_address=f"10.9.{i // 250}.{i % 250 + 1}",
            )
            for i in range(start, start + count)
        ]
        s.add_all(devices)
        s.flush()
        return [d.id for d in devices]
