"""`labkeeper import devices FILE.csv` and `labkeeper export devices FILE.csv`.

One device per line, with a header naming the columns (any order; only `name` and
`device_type` are required): the columns of `COLUMNS`. `tags` holds tag names separated by
`;` (the tags a person set; tags given by rules come back by themselves). A device is matched by
name: a new one is created, an existing one gets the fields that differ, through the inventory
service (validation, port checks, field history, tag rules and audit as in the API). Missing
device types, sites and tags are created. The same file imported twice changes nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from labkeeper.core.db import Database
from labkeeper.core.errors import AppError
from labkeeper.importers import records
from labkeeper.importers.common import IMPORT_ACTOR, ImportError_, Progress, Report, Run
from labkeeper.inventory import repository, service
from labkeeper.inventory.models import Device, DeviceType, Site
from labkeeper.inventory.schemas import (
    DeviceCreate,
    DeviceTypeCreate,
    DeviceUpdate,
    SiteCreate,
    TagCreate,
)

COLUMNS = (
    "name",
    "device_type",
    "status",
    "platform",
    "mgmt_address",
    "hostname",
    "ssh_port",
    "switch_name",
    "switch_in_port",
    "switch_out_port",
    "serial",
    "model",
    "site",
    "rack",
    "tags",
    "notes",
)
INTEGERS = ("ssh_port", "switch_in_port", "switch_out_port")
# Columns read straight from the device row (the others are looked up by name).
PLAIN = tuple(c for c in COLUMNS if c not in ("device_type", "site", "tags"))
TABLE = "devices.csv"


def read_rows(path: Path) -> list[dict[str, str]]:
    """The lines of a device CSV as dicts; ImportError_ when it is not one."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            if "name" not in header or "device_type" not in header:
                raise ImportError_(f"{path}: the header must name at least name and device_type")
            unknown = sorted(set(header) - set(COLUMNS))
            if unknown:
                raise ImportError_(
                    f"{path}: unknown columns {', '.join(unknown)}; known: {', '.join(COLUMNS)}"
                )
            return [
                {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
                for row in reader
            ]
    except OSError as exc:
        raise ImportError_(f"cannot read {path}: {exc}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ImportError_(f"{path} is not a CSV file: {exc}") from exc


def _values(row: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in COLUMNS:
        if key not in row or key == "tags":
            continue
        raw = row[key]
        if key in INTEGERS:
            values[key] = int(raw) if raw else None
        else:
            values[key] = raw or None
    if values.get("ssh_port") is None:
        values.pop("ssh_port", None)
    if values.get("status") is None:
        values.pop("status", None)
    return values


def _tag_names(row: dict[str, str]) -> list[str] | None:
    if "tags" not in row:
        return None
    return sorted({t.strip() for t in row["tags"].split(";") if t.strip()}, key=str.lower)


def _ensure_catalog(run: Run, values: dict[str, Any], tags: list[str] | None) -> None:
    s = run.session
    type_name = values.get("device_type")
    if type_name and repository.device_type_by_name(s, type_name) is None:
        service.create_device_type(
            s,
            data=DeviceTypeCreate(name=type_name, category=records.category(type_name)),
            actor=IMPORT_ACTOR,
        )
    site = values.get("site")
    if site and s.scalar(select(Site.id).where(Site.name == site)) is None:
        service.create_site(s, data=SiteCreate(name=site), actor=IMPORT_ACTOR)
    for name in tags or []:
        if repository.tag_by_name(s, name) is None:
            service.create_tag(s, data=TagCreate(name=name), actor=IMPORT_ACTOR)


def _current(run: Run, device: Device) -> tuple[dict[str, Any], list[str]]:
    s = run.session
    dtype = s.get(DeviceType, device.device_type_id)
    site = s.get(Site, device.site_id) if device.site_id else None
    values = {k: getattr(device, k) for k in PLAIN}
    values["device_type"] = dtype.name if dtype else None
    values["site"] = site.name if site else None
    tags = repository.tags_of_devices(s, [device.id]).get(device.id, [])
    manual = sorted((t["name"] for t in tags if t.get("source") == "manual"), key=str.lower)
    return values, manual


def run_import(
    database: Database, path: Path, *, dry_run: bool = False, progress: Progress | None = None
) -> Report:
    """Create or update devices from a CSV file; one transaction for the whole file."""
    rows = read_rows(path)
    run = Run(database, "devices-csv", dry_run=dry_run, progress=progress)
    counts = run.report.table(TABLE)
    counts.source = len(rows)
    try:
        for line, row in enumerate(rows, start=2):
            _one(run, line, row)
            if progress:
                progress(TABLE, line - 1)
    except BaseException:
        run.abort()
        raise
    return run.finish()


def _one(run: Run, line: int, row: dict[str, str]) -> None:
    s = run.session
    ref = f"line {line} ({row.get('name') or '?'})"
    try:
        values = _values(row)
    except ValueError:
        run.skip(TABLE, ref, "a port is not a whole number")
        return
    tags = _tag_names(row)
    savepoint = s.begin_nested()
    try:
        device = repository.device_by_name(s, values.get("name") or "")
        if device is None:
            data = DeviceCreate(**values, tags=tags or [])
            _ensure_catalog(run, values, tags)
            service.create_device(s, data=data, actor=IMPORT_ACTOR)
            savepoint.commit()
            run.created(TABLE)
            return
        current, manual = _current(run, device)
        changes = {k: v for k, v in values.items() if current.get(k) != v and k != "name"}
        if changes:
            data_update = DeviceUpdate(**changes)
            _ensure_catalog(run, changes, None)
            service.update_device(s, device_id=device.id, data=data_update, actor=IMPORT_ACTOR)
        if tags is not None and [t.lower() for t in tags] != [t.lower() for t in manual]:
            _ensure_catalog(run, {}, tags)
            service.set_device_tags(s, device_id=device.id, names=tags, actor=IMPORT_ACTOR)
            changes["tags"] = tags
        savepoint.commit()
        if changes:
            run.report.table(TABLE).updated += 1
            run.note(TABLE, ref, f"updated {', '.join(sorted(changes))}")
        else:
            run.existing(TABLE)
    except ValidationError as exc:
        savepoint.rollback()
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        run.skip(TABLE, ref, f"{where}: {first['msg']}" if where else first["msg"])
    except AppError as exc:
        savepoint.rollback()
        run.skip(TABLE, ref, exc.message)


def export(database: Database, path: Path) -> int:
    """Write every device to a CSV file (the columns `import devices` reads); returns the count."""
    with database.scope(write=False) as s:
        devices = list(s.scalars(select(Device).order_by(Device.name)))
        types = {t.id: t.name for t in s.scalars(select(DeviceType))}
        sites = {x.id: x.name for x in s.scalars(select(Site))}
        tags = repository.tags_of_devices(s, [d.id for d in devices])
        rows = []
        for device in devices:
            row: dict[str, Any] = {k: getattr(device, k) for k in PLAIN}
            row["device_type"] = types.get(device.device_type_id)
            row["site"] = sites.get(device.site_id) if device.site_id else None
            row["tags"] = ";".join(
                sorted(
                    (t["name"] for t in tags.get(device.id, []) if t.get("source") == "manual"),
                    key=str.lower,
                )
            )
            rows.append(row)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return len(rows)
