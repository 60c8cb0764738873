"""Rules of the configuration keeper: credentials, stored versions, runs and scheduled jobs.

- Credentials: secrets are encrypted with MultiFernet on the way in and never come out; every
  change is audited without them. `rotate_keys` re-encrypts everything under the newest key.
- Stored versions: history, unified diffs between any two versions, search over each device's
  newest version, retention by count and age.
- Runs: `start_backup` queues a `backups.run` on the jobs engine (dispatched after commit).
- Scheduled jobs: once, interval, cron, daily, weekly and monthly schedules computed in the lab's
  time zone; `next_run_at` is recomputed on every change, so a change applies at once, and
  `fire_due` (a scheduler hook) fires each due time once with a compare-and-set.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from croniter import croniter
from cryptography.fernet import InvalidToken
from sqlalchemy import CursorResult, delete, update
from sqlalchemy.orm import Session

from labkeeper.admin import service as settings
from labkeeper.backups import diff, repository, storage
from labkeeper.backups.models import ConfigBackup, Credential, CredentialTag
from labkeeper.backups.schemas import (
    BackupRunCreate,
    CredentialCreate,
    CredentialTagIn,
    CredentialUpdate,
    ScheduledJobCreate,
    ScheduledJobUpdate,
)
from labkeeper.core import audit, security
from labkeeper.core.audit import Actor
from labkeeper.core.errors import AlreadyExists, Invalid, NotFound, not_found
from labkeeper.core.time import utcnow
from labkeeper.inventory.models import Device, Tag
from labkeeper.jobs import registry
from labkeeper.jobs import service as jobs
from labkeeper.jobs.models import JobLog, ScheduledJob, ScheduledJobTag

log = logging.getLogger(__name__)

BACKUP_TASK = "backups.run"
REACHABILITY_TASK = "inventory.health"
TASK_OF_JOB_TYPE = {"backup": BACKUP_TASK, "reachability": REACHABILITY_TASK}
SECRET_FIELDS = ("password", "enable_secret", "ssh_key")
SEARCH_LINES = 20
SEARCH_WORDS = 10
NO_SYNC = {"synchronize_session": False}


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _rate(success: int, failure: int) -> float | None:
    return round(success / (success + failure), 4) if success + failure else None


def _tags_named(session: Session, names: Sequence[str], *, field: str) -> dict[str, Tag]:
    lowered = [n.lower() for n in names]
    if len(set(lowered)) != len(lowered):
        raise Invalid("a tag is named twice", field=field)
    found = repository.tags_by_names(session, names)
    missing = [n for n in names if n.lower() not in found]
    if missing:
        raise Invalid(
            f"unknown tag(s): {', '.join(missing)}; create them first",
            field=field,
            details={"unknown": missing},
        )
    return found


# -- credentials -------------------------------------------------------------------------------


def credential_view(row: Credential, tags: list[dict[str, Any]]) -> dict[str, Any]:
    """A credential as the API shows it: never a secret, only whether each one is set."""
    return {
        "id": row.id,
        "name": row.name,
        "username": row.username,
        "description": row.description,
        "is_system": row.is_system,
        "has_password": bool(row.password_enc),
        "has_enable_secret": bool(row.enable_secret_enc),
        "has_ssh_key": bool(row.ssh_key_enc),
        "success_count": row.success_count,
        "failure_count": row.failure_count,
        "success_rate": _rate(row.success_count, row.failure_count),
        "last_used_at": row.last_used_at,
        "last_success_at": row.last_success_at,
        "tags": tags,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def credential_views(session: Session, rows: Sequence[Credential]) -> list[dict[str, Any]]:
    """Credentials with their tags (one query for the tags of the whole page)."""
    tags = repository.credential_tags_of(session, [r.id for r in rows])
    return [credential_view(r, tags.get(r.id, [])) for r in rows]


def get_credential(session: Session, credential_id: int) -> Credential:
    """A credential, or 404."""
    row = session.get(Credential, credential_id)
    if row is None:
        raise not_found("credential", credential_id)
    return row


def credential_detail(session: Session, credential_id: int) -> dict[str, Any]:
    """One credential with its tags."""
    return credential_views(session, [get_credential(session, credential_id)])[0]


def _set_links(session: Session, row: Credential, items: Sequence[CredentialTagIn]) -> None:
    tags = _tags_named(session, [i.tag for i in items], field="tags")
    wanted = {tags[i.tag.lower()].id: i.priority for i in items}
    for link in repository.credential_links(session, row.id):
        if link.tag_id in wanted:
            link.priority = wanted.pop(link.tag_id)
        else:
            session.delete(link)
    for tag_id, priority in wanted.items():
        session.add(CredentialTag(credential_id=row.id, tag_id=tag_id, priority=priority))
    session.flush()


def _secret_payload(data: CredentialCreate | CredentialUpdate) -> dict[str, Any]:
    # The trail says which secrets were given or cleared, never what they are (key names
    # without "secret" in them, or the audit scrubber would hide the lists themselves).
    payload: dict[str, Any] = {
        "fields": data.model_dump(exclude=set(SECRET_FIELDS), exclude_unset=True),
        "given": [f for f in SECRET_FIELDS if getattr(data, f, None)],
    }
    if isinstance(data, CredentialUpdate):
        payload["cleared"] = [
            f for f in SECRET_FIELDS if f in data.model_fields_set and getattr(data, f) is None
        ]
    return payload


def create_credential(session: Session, *, data: CredentialCreate, actor: Actor) -> Credential:
    """Store a credential with its secrets encrypted; names are unique (ignoring case)."""
    if repository.credential_by_name(session, data.name) is not None:
        raise AlreadyExists(
            f"a credential called {data.name!r} exists already", details={"field": "name"}
        )
    row = Credential(
        name=data.name,
        username=data.username,
        password_enc=security.encrypt(data.password),
        enable_secret_enc=security.encrypt(data.enable_secret) if data.enable_secret else None,
        ssh_key_enc=security.encrypt(data.ssh_key) if data.ssh_key else None,
        description=data.description,
    )
    session.add(row)
    session.flush()
    _set_links(session, row, data.tags)
    audit.record(session, actor, "credentials.create", "credential", row.id, **_payload(data))
    return row


def _payload(data: CredentialCreate | CredentialUpdate) -> dict[str, Any]:
    return {"payload": _secret_payload(data)}


def update_credential(
    session: Session, *, credential_id: int, data: CredentialUpdate, actor: Actor
) -> Credential:
    """Change a credential; given secrets replace the stored ones, null clears optional ones."""
    row = get_credential(session, credential_id)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes:
        other = repository.credential_by_name(session, changes["name"])
        if other is not None and other.id != row.id:
            raise AlreadyExists(
                f"a credential called {changes['name']!r} exists already",
                details={"field": "name"},
            )
        row.name = changes["name"]
    if "username" in changes:
        row.username = changes["username"]
    if "description" in changes:
        row.description = changes["description"]
    for name in SECRET_FIELDS:
        if name in changes:
            value = changes[name]
            setattr(row, f"{name}_enc", security.encrypt(value) if value else None)
    row.updated_at = utcnow()
    session.flush()
    if data.tags is not None:
        _set_links(session, row, data.tags)
    audit.record(session, actor, "credentials.update", "credential", row.id, **_payload(data))
    return row


def delete_credential(session: Session, *, credential_id: int, actor: Actor) -> None:
    """Delete a credential and its tag links (devices and versions keep no reference to it)."""
    row = get_credential(session, credential_id)
    name = row.name
    session.execute(delete(Credential).where(Credential.id == row.id), execution_options=NO_SYNC)
    session.flush()
    audit.record(
        session, actor, "credentials.delete", "credential", credential_id, payload={"name": name}
    )


def device_candidates(session: Session, device_id: int) -> list[dict[str, Any]]:
    """The credentials a collection from this device would try, in order."""
    device = get_device(session, device_id)
    (item,) = storage.plan(session, [device_id])
    links = {(r[1], r[2]): r for r in repository.candidate_rows(session, [device_id])}
    creds = repository.credentials_by_ids(session, [c for c, _ in item.candidates])
    out = []
    for cred_id, tag_id in item.candidates:
        link = links[(cred_id, tag_id)]
        out.append(
            {
                "credential_id": cred_id,
                "name": creds[cred_id].name,
                "username": creds[cred_id].username,
                "tag": link[3],
                "priority": link[4],
                "success_rate": _rate(link[5], link[6]),
                "last_good": cred_id == device.last_credential_id,
            }
        )
    return out


def rotate_keys(session: Session, *, actor: Actor) -> int:
    """Re-encrypt every stored secret under the newest key; returns how many were rewritten.

    All credentials change in one transaction: either every secret is readable with the newest
    key afterwards, or (when some secret opens with no configured key) nothing changes.
    """
    unreadable: list[str] = []
    rewritten = 0
    ids = repository.all_credential_ids(session)
    for part in repository.chunks(ids):
        for row in repository.credentials_by_ids(session, part).values():
            for name in SECRET_FIELDS:
                token = getattr(row, f"{name}_enc")
                if not token:
                    continue
                try:
                    setattr(row, f"{name}_enc", security.rotate(token))
                except InvalidToken:  # no configured key opens it
                    unreadable.append(f"{row.name} ({name})")
                    continue
                rewritten += 1
        session.flush()
    if unreadable:
        raise Invalid(
            "these secrets open with none of the configured keys; add the key that encrypted "
            f"them to LABKEEPER_SECRET_KEYS and retry: {', '.join(unreadable[:20])}",
            code="undecryptable",
            details={"secrets": unreadable},
        )
    audit.record(
        session,
        actor,
        "credentials.rotate_keys",
        "credential",
        None,
        payload={"credentials": len(ids), "secrets": rewritten},
    )
    return rewritten


# -- stored versions ---------------------------------------------------------------------------


def backup_view(row: ConfigBackup, device_name: str, *, content: bool = False) -> dict[str, Any]:
    """A stored version as the API shows it (with its text when asked)."""
    view = {
        "id": row.id,
        "device_id": row.device_id,
        "device_name": device_name,
        "version": row.version,
        "content_hash": row.content_hash,
        "size_bytes": row.size_bytes,
        "line_count": row.line_count,
        "lines_added": row.lines_added,
        "lines_removed": row.lines_removed,
        "platform": row.platform,
        "collected_at": row.collected_at,
        "credential_id": row.credential_id,
        "job_log_id": row.job_log_id,
        "is_automatic": row.is_automatic,
    }
    if content:
        view["content"] = row.content
    return view


def get_backup(session: Session, backup_id: int) -> tuple[ConfigBackup, str]:
    """A stored version and its device's name, or 404."""
    found = repository.backup_with_device(session, backup_id)
    if found is None:
        raise not_found("backup", backup_id)
    return found


def get_device(session: Session, device_id: int) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise not_found("device", device_id)
    return device


def latest_backup(session: Session, device_id: int) -> dict[str, Any]:
    """A device's newest stored version with its text; 404 when none is stored."""
    device = get_device(session, device_id)
    row = repository.latest_backup(session, device_id)
    if row is None:
        raise NotFound(
            f"no configuration of device {device.name!r} is stored yet",
            code="no_backup",
            details={"device_id": device_id},
        )
    return backup_view(row, device.name, content=True)


def _diff(old: ConfigBackup, old_name: str, new: ConfigBackup, new_name: str) -> dict[str, Any]:
    added, removed = diff.stats(old.content, new.content)
    return {
        "from_id": old.id,
        "to_id": new.id,
        "from_version": old.version,
        "to_version": new.version,
        "from_device_id": old.device_id,
        "to_device_id": new.device_id,
        "lines_added": added,
        "lines_removed": removed,
        "diff": diff.unified(
            old.content,
            new.content,
            old_name=f"{old_name} v{old.version}",
            new_name=f"{new_name} v{new.version}",
        ),
    }


def diff_backups(session: Session, *, from_id: int, to_id: int) -> dict[str, Any]:
    """A unified diff between any two stored versions (of one device or of two)."""
    old, old_name = get_backup(session, from_id)
    new, new_name = get_backup(session, to_id)
    return _diff(old, old_name, new, new_name)


def diff_device(
    session: Session, *, device_id: int, from_version: int | None, to_version: int | None
) -> dict[str, Any]:
    """A unified diff between two versions of a device (default: the newest and the one before)."""
    device = get_device(session, device_id)
    if to_version is None:
        newest = repository.latest_backup(session, device_id)
        if newest is None:
            raise NotFound(
                f"no configuration of device {device.name!r} is stored yet", code="no_backup"
            )
        to_version = newest.version
    if from_version is None:
        from_version = max(1, to_version - 1)
    rows = []
    for field, number in (("from_version", from_version), ("to_version", to_version)):
        row = repository.backup_by_version(session, device_id, number)
        if row is None:
            raise NotFound(
                f"device {device.name!r} has no stored version {number}",
                details={"field": field, "version": number},
            )
        rows.append(row)
    return _diff(rows[0], device.name, rows[1], device.name)


def search_words(q: str) -> list[str]:
    """The words of a search, at most SEARCH_WORDS of them; 422 when there are none."""
    words = [w for w in q.split() if w][:SEARCH_WORDS]
    if not words:
        raise Invalid("give at least one word to search for", field="q")
    return words


def search_hit(row: ConfigBackup, device_name: str, words: list[str]) -> dict[str, Any]:
    """A search result: the version and its lines holding any of the words."""
    lowered = [w.lower() for w in words]
    lines = []
    for number, text in enumerate(row.content.splitlines(), start=1):
        low = text.lower()
        if any(w in low for w in lowered):
            lines.append({"number": number, "text": text})
            if len(lines) >= SEARCH_LINES:
                break
    return {
        "device_id": row.device_id,
        "device_name": device_name,
        "backup_id": row.id,
        "version": row.version,
        "collected_at": row.collected_at,
        "lines": lines,
    }


def prune(session: Session, *, now: datetime, batch: int = 500) -> int:
    """Delete one batch of versions past retention (count and age); never a device's newest."""
    keep = int(settings.get(session, "backup.retention_versions"))
    days = int(settings.get(session, "backup.retention_days"))
    ids = repository.over_count(session, keep, limit=batch)
    if len(ids) < batch:
        ids += repository.superseded_before(
            session, now - timedelta(days=days), limit=batch - len(ids)
        )
    ids = sorted(set(ids))
    if ids:
        session.execute(
            delete(ConfigBackup).where(ConfigBackup.id.in_(ids)), execution_options=NO_SYNC
        )
        session.flush()
    return len(ids)


# -- runs --------------------------------------------------------------------------------------


def start_backup(
    session: Session,
    *,
    actor: Actor | None,
    device_ids: Sequence[int] | None = None,
    tag_ids: Sequence[int] | None = None,
    automatic: bool = False,
    scheduled_job_id: int | None = None,
    local: bool = False,
) -> JobLog:
    """Queue a backup run of some devices, the devices with some tags, or every device.

    `local` keeps the collection in the process that runs the run, even in Redis mode.
    """
    params: dict[str, Any] = {"automatic": automatic}
    if local:
        params["local"] = True
    if device_ids is not None:
        params["device_ids"] = sorted(set(device_ids))
    if tag_ids is not None:
        params["tag_ids"] = sorted(set(tag_ids))
    single = device_ids[0] if device_ids is not None and len(set(device_ids)) == 1 else None
    return jobs.enqueue(
        session,
        BACKUP_TASK,
        params=params,
        actor=actor,
        device_id=single,
        scheduled_job_id=scheduled_job_id,
    )


def run_backups(
    session: Session, *, data: BackupRunCreate, actor: Actor, local: bool = False
) -> JobLog:
    """Collect now from devices by id and/or by tag (every device when neither is given)."""
    device_ids: list[int] | None = None
    tag_ids: list[int] | None = None
    if data.device_ids:
        found = set(repository.existing_device_ids(session, data.device_ids))
        missing = sorted(set(data.device_ids) - found)
        if missing:
            raise Invalid(
                f"unknown device id(s): {', '.join(map(str, missing[:20]))}",
                field="device_ids",
                details={"unknown": missing[:100]},
            )
        device_ids = sorted(found)
    if data.tags:
        tags = _tags_named(session, data.tags, field="tags")
        tag_ids = sorted(t.id for t in tags.values())
    if device_ids is not None and tag_ids is not None:
        # Both given: the union, resolved now.
        device_ids = sorted(
            set(device_ids) | set(repository.active_device_ids(session, tag_ids=tag_ids))
        )
        tag_ids = None
    run = start_backup(session, actor=actor, device_ids=device_ids, tag_ids=tag_ids, local=local)
    audit.record(
        session,
        actor,
        "backups.run",
        "job_log",
        run.id,
        payload={"device_ids": (device_ids or [])[:100], "tags": data.tags},
    )
    return run


def resolve_devices(
    session: Session, *, device_ids: Sequence[int] | None, tag_ids: Sequence[int] | None
) -> list[int]:
    """The devices a run covers: those named (if they exist), those with the tags, or all."""
    if device_ids is not None:
        return repository.existing_device_ids(session, device_ids)
    if tag_ids is not None:
        return repository.active_device_ids(session, tag_ids=tag_ids)
    return repository.active_device_ids(session)


# -- schedules ---------------------------------------------------------------------------------


def lab_timezone(session: Session) -> ZoneInfo:
    """The lab's time zone (setting general.lab_timezone)."""
    return ZoneInfo(str(settings.get(session, "general.lab_timezone")))


def _at(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    hours, minutes = (int(p) for p in hhmm.split(":"))
    # Through UTC and back, so a time that does not exist on that day (a DST gap) moves on.
    local = datetime.combine(day, time(hours, minutes), tzinfo=tz)
    return local.astimezone(UTC)


def _cron_ok(expression: str) -> bool:
    fields = expression.split()
    if expression.startswith("@"):
        return expression in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly")
    return len(fields) == 5 and bool(croniter.is_valid(expression))


def next_run(
    *,
    schedule_type: str,
    now: datetime,
    tz: ZoneInfo,
    interval_seconds: int | None = None,
    cron_expression: str | None = None,
    run_at: datetime | None = None,
    time_of_day: str | None = None,
    day_of_week: int | None = None,
    day_of_month: int | None = None,
    last_run_at: datetime | None = None,
) -> datetime | None:
    """When a schedule next falls due after `now` (UTC); None when it never will again."""
    local = now.astimezone(tz)
    if schedule_type == "once":
        return run_at if run_at is not None and last_run_at is None else None
    if schedule_type == "interval":
        assert interval_seconds
        step = timedelta(seconds=interval_seconds)
        return max((last_run_at or now) + step, now) if last_run_at else now + step
    if schedule_type == "cron":
        assert cron_expression
        following = croniter(cron_expression, local).get_next(datetime)
        return cast(datetime, following).astimezone(UTC)
    assert time_of_day
    if schedule_type == "daily":
        for offset in range(3):
            candidate = _at(local.date() + timedelta(days=offset), time_of_day, tz)
            if candidate > now:
                return candidate
    if schedule_type == "weekly":
        assert day_of_week is not None
        ahead = (day_of_week - local.weekday()) % 7
        for offset in (ahead, ahead + 7, ahead + 14):
            candidate = _at(local.date() + timedelta(days=offset), time_of_day, tz)
            if candidate > now:
                return candidate
    if schedule_type == "monthly":
        assert day_of_month is not None
        year, month = local.year, local.month
        for _ in range(3):
            last_day = calendar.monthrange(year, month)[1]
            candidate = _at(date(year, month, min(day_of_month, last_day)), time_of_day, tz)
            if candidate > now:
                return candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    raise ValueError(f"cannot compute the next run of a {schedule_type} schedule")


SCHEDULE_FIELDS = {
    "once": ("run_at",),
    "interval": ("interval_seconds",),
    "cron": ("cron_expression",),
    "daily": ("time_of_day",),
    "weekly": ("time_of_day", "day_of_week"),
    "monthly": ("time_of_day", "day_of_month"),
}
ALL_SCHEDULE_FIELDS = (
    "interval_seconds",
    "cron_expression",
    "run_at",
    "time_of_day",
    "day_of_week",
    "day_of_month",
)


def _check_schedule(values: dict[str, Any], *, now: datetime, creating: bool) -> None:
    kind = values["schedule_type"]
    for name in SCHEDULE_FIELDS[kind]:
        if values.get(name) is None:
            raise Invalid(f"a {kind} schedule needs {name}", field=name)
    # Fields of other schedule types are cleared, so a row only says what applies.
    for name in ALL_SCHEDULE_FIELDS:
        if name not in SCHEDULE_FIELDS[kind]:
            values[name] = None
    if kind == "cron" and not _cron_ok(values["cron_expression"]):
        raise Invalid(
            f"{values['cron_expression']!r} is not a cron expression: use five fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 2 * * *', or @daily",
            field="cron_expression",
        )
    if kind == "once" and creating and values["run_at"] < now - timedelta(minutes=1):
        raise Invalid("run_at is in the past", field="run_at")


def _schedule_next(job: ScheduledJob, *, now: datetime, tz: ZoneInfo) -> datetime | None:
    try:
        return next_run(
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
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueErrors
        raise Invalid(f"the schedule never falls due: {exc}", field="schedule_type") from None


def scheduled_job_view(
    job: ScheduledJob, device_name: str | None, tags: list[str], tz: str
) -> dict[str, Any]:
    """A scheduled job as the API shows it."""
    return {
        "id": job.id,
        "name": job.name,
        "job_type": job.job_type,
        "target_type": job.target_type,
        "device_id": job.device_id,
        "device_name": device_name,
        "tags": tags,
        "schedule_type": job.schedule_type,
        "interval_seconds": job.interval_seconds,
        "cron_expression": job.cron_expression,
        "run_at": job.run_at,
        "time_of_day": job.time_of_day,
        "day_of_week": job.day_of_week,
        "day_of_month": job.day_of_month,
        "timezone": tz,
        "enabled": job.enabled,
        "next_run_at": job.next_run_at,
        "last_run_at": job.last_run_at,
        "created_by": job.created_by,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def scheduled_job_views(
    session: Session, rows: Sequence[tuple[ScheduledJob, str | None]]
) -> list[dict[str, Any]]:
    """Scheduled jobs with device names and tags (one query for the tags of the whole page)."""
    tags = repository.job_tags(session, [job.id for job, _ in rows])
    tz = str(settings.get(session, "general.lab_timezone"))
    return [
        scheduled_job_view(job, name, [n for _, n in tags.get(job.id, [])], tz)
        for job, name in rows
    ]


def get_scheduled_job(session: Session, job_id: int) -> tuple[ScheduledJob, str | None]:
    """A scheduled job and its device's name, or 404."""
    found = repository.scheduled_job_with_device(session, job_id)
    if found is None:
        raise not_found("scheduled job", job_id)
    return found


def scheduled_job_detail(session: Session, job_id: int) -> dict[str, Any]:
    """One scheduled job as the API shows it."""
    return scheduled_job_views(session, [get_scheduled_job(session, job_id)])[0]


def _check_target(session: Session, values: dict[str, Any]) -> list[Tag]:
    kind = values["target_type"]
    tags: list[Tag] = []
    if kind == "device":
        if values.get("device_id") is None:
            raise Invalid("a job targeting one device needs device_id", field="device_id")
        if session.get(Device, values["device_id"]) is None:
            raise Invalid(f"there is no device {values['device_id']}", field="device_id")
    else:
        values["device_id"] = None
    if kind == "tags":
        if not values.get("tags"):
            raise Invalid("a job targeting tags needs at least one tag", field="tags")
        tags = list(_tags_named(session, values["tags"], field="tags").values())
    return tags


def _set_job_tags(session: Session, job: ScheduledJob, tags: list[Tag]) -> None:
    wanted = {t.id for t in tags}
    for row in repository.job_tag_rows(session, job.id):
        if row.tag_id in wanted:
            wanted.discard(row.tag_id)
        else:
            session.delete(row)
    for tag_id in sorted(wanted):
        session.add(ScheduledJobTag(scheduled_job_id=job.id, tag_id=tag_id))
    session.flush()


def _job_payload(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}


def create_scheduled_job(
    session: Session, *, data: ScheduledJobCreate, actor: Actor
) -> ScheduledJob:
    """Create a scheduled job; its next run is computed in the lab's time zone."""
    if repository.scheduled_job_by_name(session, data.name) is not None:
        raise AlreadyExists(
            f"a scheduled job called {data.name!r} exists already", details={"field": "name"}
        )
    now = utcnow()
    values = data.model_dump()
    _check_schedule(values, now=now, creating=True)
    tags = _check_target(session, values)
    job = ScheduledJob(
        name=values["name"],
        job_type=values["job_type"],
        target_type=values["target_type"],
        device_id=values["device_id"],
        schedule_type=values["schedule_type"],
        enabled=values["enabled"],
        created_by=actor.user_id,
        **{k: values[k] for k in ALL_SCHEDULE_FIELDS},
    )
    job.next_run_at = (
        _schedule_next(job, now=now, tz=lab_timezone(session)) if job.enabled else None
    )
    session.add(job)
    session.flush()
    _set_job_tags(session, job, tags)
    audit.record(
        session,
        actor,
        "scheduled_jobs.create",
        "scheduled_job",
        job.id,
        payload=_job_payload(values),
    )
    return job


def update_scheduled_job(
    session: Session, *, job_id: int, data: ScheduledJobUpdate, actor: Actor
) -> ScheduledJob:
    """Change a scheduled job; the next run is recomputed, so the change applies at once."""
    job, _ = get_scheduled_job(session, job_id)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes:
        other = repository.scheduled_job_by_name(session, changes["name"])
        if other is not None and other.id != job.id:
            raise AlreadyExists(
                f"a scheduled job called {changes['name']!r} exists already",
                details={"field": "name"},
            )
    current_tags = [n for _, n in repository.job_tags(session, [job.id]).get(job.id, [])]
    values: dict[str, Any] = {
        "name": job.name,
        "job_type": job.job_type,
        "target_type": job.target_type,
        "device_id": job.device_id,
        "tags": current_tags,
        "schedule_type": job.schedule_type,
        "enabled": job.enabled,
        **{k: getattr(job, k) for k in ALL_SCHEDULE_FIELDS},
    }
    values.update(changes)
    now = utcnow()
    _check_schedule(values, now=now, creating="run_at" in changes)
    tags = _check_target(session, values)
    if "schedule_type" in changes or "run_at" in changes:
        # A new schedule starts afresh (a once job moved to a new time runs again).
        job.last_run_at = None if values["schedule_type"] == "once" else job.last_run_at
    for key in ("name", "job_type", "target_type", "device_id", "schedule_type", "enabled"):
        setattr(job, key, values[key])
    for key in ALL_SCHEDULE_FIELDS:
        setattr(job, key, values[key])
    job.next_run_at = (
        _schedule_next(job, now=now, tz=lab_timezone(session)) if job.enabled else None
    )
    job.updated_at = now
    session.flush()
    _set_job_tags(session, job, tags if values["target_type"] == "tags" else [])
    audit.record(
        session,
        actor,
        "scheduled_jobs.update",
        "scheduled_job",
        job.id,
        payload=_job_payload(changes),
    )
    return job


def set_enabled(session: Session, *, job_id: int, enabled: bool, actor: Actor) -> ScheduledJob:
    """Enable (next run computed now) or disable (no next run) a scheduled job."""
    job, _ = get_scheduled_job(session, job_id)
    now = utcnow()
    job.enabled = enabled
    job.next_run_at = _schedule_next(job, now=now, tz=lab_timezone(session)) if enabled else None
    job.updated_at = now
    session.flush()
    action = "scheduled_jobs.enable" if enabled else "scheduled_jobs.disable"
    audit.record(session, actor, action, "scheduled_job", job.id, payload={"name": job.name})
    return job


def delete_scheduled_job(session: Session, *, job_id: int, actor: Actor) -> None:
    """Delete a scheduled job; it never fires again (its past runs stay in the log)."""
    job, _ = get_scheduled_job(session, job_id)
    name = job.name
    session.execute(
        delete(ScheduledJob).where(ScheduledJob.id == job.id), execution_options=NO_SYNC
    )
    session.flush()
    audit.record(
        session, actor, "scheduled_jobs.delete", "scheduled_job", job_id, payload={"name": name}
    )


def _enqueue_job(
    session: Session, job: ScheduledJob, *, actor: Actor | None, automatic: bool
) -> JobLog:
    tag_ids = [t for t, _ in repository.job_tags(session, [job.id]).get(job.id, [])]
    if job.job_type == "reachability":
        device_ids: list[int] | None = None
        if job.target_type == "device" and job.device_id is not None:
            device_ids = [job.device_id]
        elif job.target_type == "tags":
            device_ids = repository.active_device_ids(session, tag_ids=tag_ids)
        return jobs.enqueue(
            session,
            REACHABILITY_TASK,
            params={"device_ids": device_ids},
            actor=actor,
            device_id=job.device_id,
            scheduled_job_id=job.id,
        )
    if job.target_type == "device":
        return start_backup(
            session,
            actor=actor,
            device_ids=[job.device_id] if job.device_id else [],
            automatic=automatic,
            scheduled_job_id=job.id,
        )
    return start_backup(
        session,
        actor=actor,
        tag_ids=tag_ids if job.target_type == "tags" else None,
        automatic=automatic,
        scheduled_job_id=job.id,
    )


def run_scheduled_job_now(session: Session, *, job_id: int, actor: Actor) -> JobLog:
    """Run a scheduled job now, whether enabled or not (its schedule is unchanged)."""
    job, _ = get_scheduled_job(session, job_id)
    run = _enqueue_job(session, job, actor=actor, automatic=False)
    audit.record(
        session,
        actor,
        "scheduled_jobs.run",
        "scheduled_job",
        job.id,
        payload={"name": job.name, "job_log_id": run.id},
    )
    return run


def fire_due(session: Session, *, now: datetime, limit: int = 100) -> list[int]:
    """Queue a run of every scheduled job that is due, each due time once (compare-and-set)."""
    tz = lab_timezone(session)
    fired: list[int] = []
    for job in repository.due_jobs(session, now, limit=limit):
        due = job.next_run_at
        task = TASK_OF_JOB_TYPE.get(job.job_type, BACKUP_TASK)
        try:
            following = next_run(
                schedule_type=job.schedule_type,
                now=now,
                tz=tz,
                interval_seconds=job.interval_seconds,
                cron_expression=job.cron_expression,
                run_at=job.run_at,
                time_of_day=job.time_of_day,
                day_of_week=job.day_of_week,
                day_of_month=job.day_of_month,
                last_run_at=now,
            )
        except (ValueError, KeyError, TypeError, AssertionError):
            log.warning("scheduled job %s has a broken schedule; it will not fire again", job.name)
            following = None
        claimed = session.execute(
            update(ScheduledJob)
            .where(
                ScheduledJob.id == job.id,
                ScheduledJob.next_run_at == due,
                ScheduledJob.enabled.is_(True),
            )
            .values(next_run_at=following, last_run_at=now),
            execution_options=NO_SYNC,
        )
        if _rowcount(claimed) != 1:
            continue  # changed, deleted or fired by someone else meanwhile
        if registry.get_task(task) is None:
            log.warning("scheduled job %s: task %s is not available here", job.name, task)
            continue
        session.refresh(job)
        run = _enqueue_job(session, job, actor=None, automatic=True)
        fired.append(run.id)
    session.flush()
    return fired
