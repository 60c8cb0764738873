"""`labkeeper import netraven-db URL`: a database in the NetRaven seed's tables.

Natural keys: users by username; devices by name (NetRaven's `hostname`); tags by name; tag
rules by tag and name; device tags and credential tags by their pair; credentials by name;
configuration versions by device and content hash (versions are renumbered 1, 2, 3... per
device in time order); scheduled jobs by name; job runs by type, start time and device; log
entries by run, time and message; settings by key; audit rows by time, action, entity and actor.

Credentials: NetRaven's credential store wrote each password as JSON
`{"key_id", "encrypted_data": base64(Fernet token), "version"}`, the Fernet key being the
SHA-256 of its NETRAVEN_ENCRYPTION_KEY passphrase (key id `default`) or a key of its key manager;
without a key it stored the password in clear. `--source-passphrase` and `--source-key-file`
give those keys; every password is decrypted and encrypted again with labkeeper's keys.

Backups: NetRaven kept each configuration in a file (`filename`, or `file_path`) and only its
name in the database; `--backup-dir` says where relative names are found. A version whose file
cannot be read is listed as not imported (labkeeper stores the text itself).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import func, select

from labkeeper.auth.models import User
from labkeeper.backups import diff
from labkeeper.backups import service as backups_service
from labkeeper.backups.models import ConfigBackup, Credential, CredentialTag
from labkeeper.core.db import Database
from labkeeper.core.security import encrypt
from labkeeper.core.time import utcnow
from labkeeper.importers import records
from labkeeper.importers.common import (
    ImportError_,
    Progress,
    Report,
    Run,
    Source,
    clean,
    dt,
    flag,
    js,
)
from labkeeper.inventory import rules
from labkeeper.inventory import service as inventory_service
from labkeeper.inventory.models import Device, DeviceTag, TagRule
from labkeeper.jobs.models import JobLog, JobLogEntry, ScheduledJob

TABLES = (
    "users",
    "tags",
    "tag_rules",
    "devices",
    "device_tags",
    "credentials",
    "credential_tags",
    "backups",
    "scheduled_jobs",
    "job_logs",
    "job_log_entries",
    "admin_settings",
    "audit_logs",
)

JOB_STATUS = {
    "success": "succeeded",
    "succeeded": "succeeded",
    "completed": "succeeded",
    "complete": "succeeded",
    "partial": "partial",
    "partial_failure": "partial",
    "partial_success": "partial",
    "failed": "failed",
    "failure": "failed",
    "error": "failed",
    "no_devices": "failed",
    "no_credentials": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
}
UNFINISHED = ("running", "pending", "queued", "in_progress", "started")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# rule_type -> (field, operator) of a rule leaf.
RULE_TYPES = {
    "hostname": ("hostname", "regex"),
    "hostname_pattern": ("hostname", "regex"),
    "hostname_regex": ("hostname", "regex"),
    "ip_range": ("mgmt_address", "in_subnet"),
    "ip_subnet": ("mgmt_address", "in_subnet"),
    "subnet": ("mgmt_address", "in_subnet"),
    "ip_address": ("mgmt_address", "equals"),
    "device_type": ("platform", "equals"),
    "platform": ("platform", "equals"),
    "vendor": ("model", "contains"),
    "model": ("model", "contains"),
    "serial_number": ("serial", "equals"),
}


def total_rows(source: Source) -> int:
    """Source rows this import reads (for the progress bar)."""
    return sum(source.count(t) for t in TABLES)


def source_keys(passphrase: str | None, key_file: Path | None) -> dict[str, list[Fernet]]:
    """Fernet keys of the source by key id (`default` for the passphrase); `*` holds all."""
    keys: dict[str, list[Fernet]] = defaultdict(list)

    def add(key_id: str, material: str) -> None:
        material = material.strip()
        try:
            fernet = Fernet(material.encode())
        except (ValueError, TypeError):
            fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()))
        keys[key_id].append(fernet)
        keys["*"].append(fernet)

    if passphrase:
        add("default", passphrase)
    if key_file is not None:
        try:
            text = key_file.read_text()
        except OSError as exc:
            raise ImportError_(f"cannot read the key file {key_file}: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key_id, value in data.items():
                material = value.get("key") if isinstance(value, dict) else value
                if isinstance(material, str):
                    add(str(key_id), material)
        else:
            for line in text.splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                # "key_id: key" (a key of NetRaven's key manager) or a bare key / passphrase.
                key_id, sep, material = line.partition(":")
                if sep:
                    add(key_id.strip(), material)
                else:
                    add("default", line)
    return keys


def open_secret(stored: str, keys: dict[str, list[Fernet]]) -> tuple[str, bool]:
    """The clear text of a NetRaven secret, and whether it was encrypted in the source.

    Raises ValueError when it is encrypted and no given key opens it.
    """
    token: bytes | None = None
    key_id = "*"
    try:
        data = json.loads(stored)
    except ValueError:
        data = None
    if isinstance(data, dict) and "encrypted_data" in data:
        token = base64.b64decode(str(data["encrypted_data"]))
        key_id = str(data.get("key_id") or "default")
    elif stored.startswith("gAAAAA"):
        token = stored.encode()
    if token is None:
        return stored, False
    if not keys.get("*"):
        raise ValueError(
            "encrypted in the source and no --source-passphrase or --source-key-file was given"
        )
    for fernet in [*keys.get(key_id, []), *keys["*"]]:
        try:
            return fernet.decrypt(token).decode(), True
        except InvalidToken:
            continue
    raise ValueError(f"no given key opens it (source key id {key_id!r})")


def run_import(
    database: Database,
    url: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    passphrase: str | None = None,
    key_file: Path | None = None,
    backup_dir: Path | None = None,
) -> Report:
    """Import a NetRaven database; the whole import is one transaction."""
    keys = source_keys(passphrase, key_file)
    source = Source(url)
    run = Run(database, "netraven-db", dry_run=dry_run, progress=progress)
    try:
        _NetRaven(run, source, keys, backup_dir).all()
    except BaseException:
        run.abort()
        raise
    finally:
        source.close()
    return run.finish()


class _NetRaven:
    def __init__(
        self,
        run: Run,
        source: Source,
        keys: dict[str, list[Fernet]],
        backup_dir: Path | None,
    ) -> None:
        self.run = run
        self.s = run.session
        self.src = source
        self.keys = keys
        self.backup_dir = backup_dir
        self.users = run.map("user")
        self.devices = run.map("device")
        self.tags = run.map("tag")
        self.credentials = run.map("credential")
        self.jobs = run.map("scheduled_job")
        self.logs = run.map("job_log")
        self.new_logs: set[int] = set()
        self.usernames: dict[int, str] = {}
        self.touched_devices: set[int] = set()

    def all(self) -> None:
        self.users_()
        self.tags_()
        self.tag_rules()
        self.devices_()
        self.device_tags()
        self.credentials_()
        self.credential_tags()
        self.backups()
        self.scheduled_jobs()
        self.job_logs()
        self.job_log_entries()
        self.admin_settings()
        self.audit_logs()
        # Imported rules tag the imported devices, as they would have in NetRaven.
        inventory_service.apply_rules(self.s, device_ids=sorted(self.touched_devices))
        self.s.flush()

    def user_id(self, value: Any) -> int | None:
        return None if value is None else self.users.get(value)

    def users_(self) -> None:
        t = "users"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            name = clean(row.get("username"))
            if not name or len(name) > 50:
                self.run.skip(t, ref, "no username, or longer than 50 characters")
                continue
            found = records.user(self.s, name)
            if found is not None:
                self.users[row["id"]] = found.id
                self.usernames[found.id] = name
                self.run.existing(t)
                continue
            email = clean(row.get("email"))
            if not records.email_free(self.s, email):
                self.run.note(t, name, f"email {email} belongs to another user; left empty")
                email = None
            hashed, why = records.password_hash(row.get("password_hash"))
            if why:
                self.run.note(t, name, why)
            new = User(
                username=name,
                email=email,
                full_name=(clean(row.get("full_name")) or None),
                password_hash=hashed,
                is_active=flag(row.get("is_active"), default=True),
            )
            if row.get("created_at"):
                new.created_at = dt(row["created_at"]) or utcnow()
            self.s.add(new)
            self.s.flush()
            self.users[row["id"]] = new.id
            self.usernames[new.id] = name
            records.ensure_role(self.s, new.id, "admin" if flag(row.get("is_admin")) else "member")
            self.run.created(t)

    def tags_(self) -> None:
        t = "tags"
        for row in self.run.each(self.src, t):
            name = clean(row.get("name"))
            if not name:
                self.run.skip(t, f"id {row['id']}", "no name")
                continue
            tag, created = records.tag(self.s, name[:50])
            self.tags[row["id"]] = tag.id
            if created:
                tag.color = records.color(row.get("color"))
                tag.description = row.get("description")
                if row.get("created_at"):
                    tag.created_at = dt(row["created_at"]) or tag.created_at
                self.run.created(t)
            else:
                tag.color = tag.color or records.color(row.get("color"))
                tag.description = tag.description or row.get("description")
                self.run.existing(t)

    def _rule_tree(self, row: dict[str, Any]) -> dict[str, Any]:
        criteria = js(row.get("rule_criteria"))
        if isinstance(criteria, dict):
            return rules.validate(criteria)
        kind = (clean(row.get("rule_type")) or "").lower()
        value = clean(row.get("rule_value"))
        if value is None:
            raise rules.RuleError("rule_value", "empty")
        if kind in RULE_TYPES:
            field, operator = RULE_TYPES[kind]
        else:
            field, _, operator = kind.partition("_")
            if field not in rules.FIELDS or operator not in rules.OPERATORS:
                raise rules.RuleError("rule_type", f"unknown rule type {kind!r}")
        return rules.validate({"field": field, "operator": operator, "value": value})

    def tag_rules(self) -> None:
        t = "tag_rules"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            tag_id = self.tags.get(row.get("tag_id"))
            if tag_id is None:
                self.run.skip(t, ref, f"tag {row.get('tag_id')} is not in the source")
                continue
            try:
                tree = self._rule_tree(row)
            except rules.RuleError as exc:
                self.run.skip(t, ref, f"rule cannot be used: {exc}")
                continue
            name = (clean(row.get("name")) or f"{row.get('rule_type')} {row.get('rule_value')}")[
                :100
            ]
            exists = records.find(self.s, TagRule, tag_id=tag_id, name=name)
            if exists is not None:
                self.run.existing(t)
                continue
            self.run.add(
                t,
                TagRule(
                    tag_id=tag_id,
                    name=name,
                    rule=tree,
                    is_active=flag(row.get("is_active"), default=True),
                ),
            )

    def devices_(self) -> None:
        t = "devices"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            hostname = clean(row.get("hostname"))
            if not hostname:
                self.run.skip(t, ref, "no hostname")
                continue
            name = hostname[:100]
            found = records.device(self.s, name)
            if found is not None:
                # The same device known to the scheduler: fill in what it did not know.
                found.hostname = found.hostname or hostname[:255]
                found.mgmt_address = found.mgmt_address or clean(row.get("ip_address"))
                found.platform = found.platform or clean(row.get("device_type"))
                self.devices[row["id"]] = found.id
                self.touched_devices.add(found.id)
                self.run.existing(t)
                continue
            platform = (clean(row.get("device_type")) or "generic")[:50]
            dtype = records.device_type(self.s, f"netraven {platform}"[:100])
            port = row.get("port")
            new = Device(
                name=name,
                hostname=hostname[:255],
                mgmt_address=clean(row.get("ip_address")),
                platform=platform,
                ssh_port=int(port) if isinstance(port, int) and 0 < port < 65536 else 22,
                serial=clean(row.get("serial_number")),
                model=clean(row.get("model")),
                notes=row.get("description"),
                status="available" if flag(row.get("enabled"), default=True) else "unavailable",
                device_type_id=dtype.id,
                created_by=self.user_id(row.get("owner_id")),
            )
            if row.get("created_at"):
                new.created_at = dt(row["created_at"]) or utcnow()
            self.s.add(new)
            self.s.flush()
            self.devices[row["id"]] = new.id
            self.touched_devices.add(new.id)
            self.run.created(t)

    def device_tags(self) -> None:
        t = "device_tags"
        for row in self.run.each(self.src, t):
            ref = f"device {row.get('device_id')} tag {row.get('tag_id')}"
            did, tag_id = self.devices.get(row.get("device_id")), self.tags.get(row.get("tag_id"))
            if did is None or tag_id is None:
                self.run.skip(t, ref, "its device or tag is not in the source")
                continue
            if self.s.get(DeviceTag, (did, tag_id)) is not None:
                self.run.existing(t)
                continue
            self.s.add(DeviceTag(device_id=did, tag_id=tag_id, source="manual"))
            self.s.flush()
            self.run.created(t)

    def credentials_(self) -> None:
        t = "credentials"
        for row in self.run.each(self.src, t):
            ref = clean(row.get("name")) or f"id {row['id']}"
            name = clean(row.get("name"))
            if not name:
                self.run.skip(t, ref, "no name")
                continue
            found = self.s.scalar(select(Credential).where(Credential.name == name[:100]))
            if found is not None:
                self.credentials[row["id"]] = found.id
                self.run.existing(t)
                continue
            stored = row.get("password")
            password_enc = None
            if stored:
                try:
                    clear, was_encrypted = open_secret(str(stored), self.keys)
                except ValueError as exc:
                    self.run.skip(t, ref, f"password cannot be decrypted: {exc}")
                    continue
                if not was_encrypted:
                    self.run.note(t, ref, "password was stored in clear; it is encrypted now")
                password_enc = encrypt(clear)
            ssh_key_enc = None
            if flag(row.get("use_keys")) and clean(row.get("key_file")):
                try:
                    ssh_key_enc = encrypt(Path(str(row["key_file"])).read_text())
                except OSError:
                    self.run.note(
                        t, ref, f"SSH key file {row['key_file']} cannot be read; not kept"
                    )
            new = Credential(
                name=name[:100],
                username=(clean(row.get("username")) or "")[:100],
                password_enc=password_enc,
                ssh_key_enc=ssh_key_enc,
                description=row.get("description"),
                success_count=int(row.get("success_count") or 0),
                failure_count=int(row.get("failure_count") or 0),
                last_used_at=dt(row.get("last_used")),
                last_success_at=dt(row.get("last_success")),
            )
            if row.get("created_at"):
                new.created_at = dt(row["created_at"]) or utcnow()
            self.s.add(new)
            self.s.flush()
            self.credentials[row["id"]] = new.id
            self.run.created(t)

    def credential_tags(self) -> None:
        t = "credential_tags"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            cid = self.credentials.get(row.get("credential_id"))
            tag_id = self.tags.get(row.get("tag_id"))
            if cid is None:
                self.run.skip(t, ref, f"credential {row.get('credential_id')} was not imported")
                continue
            if tag_id is None:
                # The seed had no foreign key here, so links to deleted tags happen.
                self.run.skip(t, ref, f"tag {row.get('tag_id')} does not exist in the source")
                continue
            exists = records.find(self.s, CredentialTag, credential_id=cid, tag_id=tag_id)
            if exists is not None:
                self.run.existing(t)
                continue
            priority = row.get("priority")
            self.run.add(
                t,
                CredentialTag(
                    credential_id=cid,
                    tag_id=tag_id,
                    priority=int(priority) if priority is not None else 100,
                    success_count=int(row.get("success_count") or 0),
                    failure_count=int(row.get("failure_count") or 0),
                ),
            )

    def _backup_text(self, row: dict[str, Any]) -> str:
        name = clean(row.get("file_path")) or clean(row.get("filename"))
        if not name:
            raise OSError("no file name")
        path = Path(name)
        candidates = [path] if path.is_absolute() else []
        if self.backup_dir is not None:
            candidates += [self.backup_dir / path, self.backup_dir / path.name]
        elif not path.is_absolute():
            candidates.append(path)
        for candidate in candidates:
            if candidate.is_file():
                return candidate.read_bytes().decode("utf-8", errors="replace")
        where = ", ".join(str(c) for c in candidates) or name
        raise OSError(f"file not found ({where}); give --backup-dir")

    def backups(self) -> None:
        t = "backups"
        by_device: dict[int, list[tuple[datetime, dict[str, Any]]]] = defaultdict(list)
        for row in self.run.each(self.src, t):
            ref = clean(row.get("filename")) or f"id {row['id']}"
            did = self.devices.get(row.get("device_id"))
            if did is None:
                self.run.skip(t, ref, f"device {row.get('device_id')} is not in the source")
                continue
            status = (clean(row.get("status")) or "complete").lower()
            if status not in ("complete", "completed", "success", "succeeded"):
                self.run.skip(t, ref, f"a {status} backup holds no configuration")
                continue
            try:
                row["_text"] = self._backup_text(row)
            except OSError as exc:
                self.run.skip(t, ref, f"configuration file cannot be read: {exc}")
                continue
            when = dt(row.get("created_at")) or utcnow()
            by_device[did].append((when, row))
        for did, items in by_device.items():
            items.sort(key=lambda item: (item[0], str(item[1].get("version"))))
            existing = {
                h: (v, c)
                for h, v, c in self.s.execute(
                    select(ConfigBackup.content_hash, ConfigBackup.version, ConfigBackup.content)
                    .where(ConfigBackup.device_id == did)
                    .order_by(ConfigBackup.version)
                )
            }
            latest = self.s.execute(
                select(ConfigBackup.version, ConfigBackup.content)
                .where(ConfigBackup.device_id == did)
                .order_by(ConfigBackup.version.desc())
                .limit(1)
            ).first()
            version, previous = (latest[0], latest[1]) if latest else (0, None)
            device = self.s.get(Device, did)
            for when, row in items:
                text: str = row["_text"]
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                if digest in existing:
                    # Same content already stored (an earlier import, or NetRaven kept a
                    # duplicate): labkeeper keeps one version per distinct content.
                    self.run.existing(t)
                    continue
                version += 1
                added, removed = diff.stats(previous, text)
                self.s.add(
                    ConfigBackup(
                        device_id=did,
                        version=version,
                        content=text,
                        content_hash=digest,
                        size_bytes=len(text.encode("utf-8")),
                        line_count=text.count("\n"),
                        lines_added=added,
                        lines_removed=removed,
                        platform=device.platform if device else None,
                        collected_at=when,
                        is_automatic=flag(row.get("is_automatic"), default=True),
                        created_at=when,
                    )
                )
                existing[digest] = (version, text)
                previous = text
                if device is not None and (
                    device.last_backup_at is None or device.last_backup_at < when
                ):
                    device.last_backup_at = when
                    device.last_backup_status = "changed"
                self.s.flush()
                self.run.created(t)

    def _schedule(self, row: dict[str, Any], ref: str) -> dict[str, Any]:
        """Schedule columns for a NetRaven job; raises ValueError when it cannot be kept."""
        data = js(row.get("job_data"))
        data = data if isinstance(data, dict) else {}
        kind = (clean(row.get("schedule_type")) or "").lower().replace("-", "_")
        at = clean(row.get("schedule_time")) or clean(data.get("time"))
        values: dict[str, Any] = {"schedule_type": kind}
        if kind in ("daily", "weekly", "monthly", "yearly"):
            if not at or not re.fullmatch(r"\d{1,2}:\d{2}", at):
                self.run.note("scheduled_jobs", ref, "no time of day; 00:00 used")
                at = "00:00"
            values["time_of_day"] = f"{int(at.split(':')[0]):02d}:{at.split(':')[1]}"
        if kind == "interval":
            minutes = row.get("schedule_interval") or data.get("interval")
            if not minutes:
                raise ValueError("an interval schedule without its interval")
            values["interval_seconds"] = max(60, int(minutes) * 60)
        elif kind == "weekly":
            day = str(row.get("schedule_day") or data.get("day") or "").strip().lower()
            if day.isdigit():
                values["day_of_week"] = int(day) % 7
            elif day[:3] in WEEKDAYS:
                values["day_of_week"] = WEEKDAYS.index(day[:3])
            else:
                raise ValueError(f"weekly schedule with day {day!r}")
        elif kind == "monthly":
            monthday = int(row.get("schedule_day") or data.get("day") or 1)
            values["day_of_month"] = min(31, max(1, monthday))
        elif kind == "yearly":
            # labkeeper has no yearly schedule: a cron expression says the same.
            month = int(data.get("month") or 1)
            yearday = int(data.get("day") or row.get("schedule_day") or 1)
            hours, minutes = values.pop("time_of_day").split(":")
            values.update(
                schedule_type="cron",
                cron_expression=f"{int(minutes)} {int(hours)} {yearday} {month} *",
            )
            self.run.note("scheduled_jobs", ref, "yearly schedule became a cron expression")
        elif kind == "cron":
            expression = clean(row.get("cron_expression")) or clean(data.get("cron"))
            if not expression:
                raise ValueError("a cron schedule without its expression")
            values["cron_expression"] = expression
        elif kind in ("once", "onetime", "one_time", "immediate"):
            values["schedule_type"] = "once"
            values["run_at"] = (
                dt(row.get("next_run")) or dt(row.get("last_run")) or dt(row.get("created_at"))
            )
            if values["run_at"] is None:
                raise ValueError("a one-time schedule without a time")
        elif kind not in ("daily",):
            raise ValueError(f"unknown schedule type {kind!r}")
        return values

    def scheduled_jobs(self) -> None:
        t = "scheduled_jobs"
        taken: dict[str, int] = {}
        tz = backups_service.lab_timezone(self.s)
        now = utcnow()
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            base = (clean(row.get("name")) or f"netraven job {row['id']}")[:90]
            # Names are unique in labkeeper; NetRaven repeated them. Numbered in source order,
            # so a second import gives the same names.
            taken[base] = taken.get(base, 0) + 1
            name = base if taken[base] == 1 else f"{base} ({taken[base]})"
            found = self.s.scalar(select(ScheduledJob.id).where(ScheduledJob.name == name))
            if found is not None:
                self.jobs[row["id"]] = found
                self.run.existing(t)
                continue
            if taken[base] > 1:
                self.run.note(t, ref, f"name {base!r} is used twice; this one is {name!r}")
            did = None
            if row.get("device_id") is not None:
                did = self.devices.get(row["device_id"])
                if did is None:
                    self.run.skip(t, ref, f"device {row['device_id']} is not in the source")
                    continue
            try:
                values = self._schedule(row, ref)
            except (ValueError, TypeError) as exc:
                self.run.skip(t, ref, f"schedule cannot be kept: {exc}")
                continue
            data = js(row.get("job_data"))
            job = ScheduledJob(
                name=name,
                job_type=str((data or {}).get("job_type") or "backup")[:30]
                if isinstance(data, dict)
                else "backup",
                target_type="device" if did else "all",
                device_id=did,
                enabled=flag(row.get("enabled"), default=True),
                last_run_at=dt(row.get("last_run")),
                created_by=self.user_id(row.get("created_by")),
                **values,
            )
            if row.get("created_at"):
                job.created_at = dt(row["created_at"]) or now
            try:
                job.next_run_at = backups_service.next_run(
                    schedule_type=job.schedule_type,
                    now=now,
                    tz=tz,
                    interval_seconds=job.interval_seconds,
                    cron_expression=job.cron_expression,
                    run_at=job.run_at,
                    time_of_day=job.time_of_day,
                    day_of_week=job.day_of_week,
                    day_of_month=job.day_of_month,
                    last_run_at=job.last_run_at,
                )
            except (ValueError, KeyError, TypeError) as exc:
                self.run.skip(t, ref, f"schedule never falls due: {exc}")
                continue
            if job.schedule_type == "once" and job.run_at is not None and job.run_at < now:
                job.enabled = False
                job.next_run_at = None
            self.s.add(job)
            self.s.flush()
            self.jobs[row["id"]] = job.id
            self.run.created(t)

    def job_logs(self) -> None:
        t = "job_logs"
        for row in self.run.each(self.src, t):
            ref = f"id {row['id']}"
            job_type = (clean(row.get("job_type")) or "backup")[:100]
            started = dt(row.get("start_time")) or dt(row.get("created_at")) or utcnow()
            did = self.devices.get(row.get("device_id")) if row.get("device_id") else None
            if row.get("device_id") is not None and did is None:
                self.run.note(t, ref, f"device {row['device_id']} is not in the source; left out")
            found = records.find(
                self.s, JobLog, job_type=job_type, queued_at=started, device_id=did
            )
            if found is not None:
                self.logs[row["id"]] = found
                self.run.existing(t)
                continue
            word = (clean(row.get("status")) or "").lower()
            status = JOB_STATUS.get(word)
            message = row.get("result_message")
            if status is None:
                status = "cancelled" if word in UNFINISHED else "failed"
                self.run.note(t, ref, f"status {word!r} imported as {status}")
                message = f"{message or ''} [status in NetRaven: {word or 'none'}]".strip()
            data = js(row.get("job_data"))
            log = JobLog(
                job_type=job_type,
                status=status,
                params=data if isinstance(data, dict) else None,
                message=message,
                device_id=did,
                created_by=self.user_id(row.get("created_by")),
                queued_at=started,
                started_at=started,
                finished_at=dt(row.get("end_time")) or started,
            )
            self.s.add(log)
            self.s.flush()
            self.logs[row["id"]] = log.id
            self.new_logs.add(log.id)
            self.run.created(t)

    def job_log_entries(self) -> None:
        t = "job_log_entries"
        for row in self.run.each(self.src, t, order_by="timestamp"):
            ref = f"id {row['id']}"
            log_id = self.logs.get(row.get("job_log_id"))
            if log_id is None:
                self.run.skip(t, ref, f"run {row.get('job_log_id')} is not in the source")
                continue
            message = row.get("message")
            if message is None:
                self.run.skip(t, ref, "no message")
                continue
            when = dt(row.get("timestamp")) or dt(row.get("created_at")) or utcnow()
            if log_id not in self.new_logs:
                exists = self.s.scalar(
                    select(func.count())
                    .select_from(JobLogEntry)
                    .where(
                        JobLogEntry.job_log_id == log_id,
                        JobLogEntry.created_at == when,
                        JobLogEntry.message == str(message),
                    )
                )
                if exists:
                    self.run.existing(t)
                    continue
            details = js(row.get("details"))
            self.s.add(
                JobLogEntry(
                    job_log_id=log_id,
                    created_at=when,
                    level=(clean(row.get("level")) or "info").lower()[:10],
                    category=(clean(row.get("category")) or None),
                    message=str(message),
                    details=details if isinstance(details, dict) else None,
                )
            )
            self.run.created(t)

    def admin_settings(self) -> None:
        records.import_settings(
            self.run, self.src, "admin_settings", unknown="not a labkeeper setting"
        )

    def audit_logs(self) -> None:
        records.import_audit_log(
            self.run,
            self.src,
            "audit_logs",
            action="event_name",
            entity="event_type",
            missing="no event type or name",
            columns=self._audit_columns,
        )

    def _audit_columns(self, row: dict[str, Any]) -> dict[str, Any]:
        actor = self.user_id(row.get("actor_id"))
        entity_id = clean(row.get("target_id"))
        name = self.usernames.get(actor) if actor else clean(row.get("actor_id"))
        metadata = js(row.get("event_metadata"))
        return {
            "created_at": dt(row.get("created_at")) or utcnow(),
            "actor_id": actor,
            "actor_username": name[:50] if name else None,
            "actor_role": clean(row.get("actor_type")),
            "entity_id": entity_id and entity_id[:64],
            "payload": metadata if isinstance(metadata, dict) else None,
            "outcome": (clean(row.get("status")) or "success").lower()[:20],
            "message": row.get("description"),
            "ip": clean(row.get("ip_address")) or None,
            "user_agent": (clean(row.get("user_agent")) or "")[:255] or None,
        }
