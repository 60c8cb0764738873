"""Queries of the configuration keeper (select(...) style); no writes here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, literal_column, or_, select
from sqlalchemy.orm import Session, aliased, defer

from labkeeper.backups.models import ConfigBackup, Credential, CredentialTag
from labkeeper.inventory.models import Device, DeviceTag, DeviceType, Tag
from labkeeper.jobs.models import JobLog, JobLogEntry, ScheduledJob, ScheduledJobTag

# IN lists are cut into chunks of this size (parameter limits of the drivers).
CHUNK = 500
T = TypeVar("T")
# A select of rows of any shape (entities with extra columns).
Rows = Select[*tuple[Any, ...]]
# Devices in this state are never collected unless named one by one.
RETIRED = "retired"
# job_log_entries.category of the one entry each device gets per run.
DEVICE_ENTRY = "device"


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ci(column: Any, value: str) -> Any:
    return func.lower(column) == value.lower()


# -- credentials -------------------------------------------------------------------------------


def credential_by_name(session: Session, name: str) -> Credential | None:
    """A credential by name, ignoring case."""
    return session.scalar(select(Credential).where(_ci(Credential.name, name)))


def credentials_query(*, q: str | None = None, tag: str | None = None) -> Select[Any]:
    """Credentials by name, optionally matching a text or linked to a tag."""
    stmt = select(Credential).order_by(Credential.name, Credential.id)
    if q:
        like = func.lower(Credential.name).contains(q.lower(), autoescape=True)
        user_like = func.lower(Credential.username).contains(q.lower(), autoescape=True)
        stmt = stmt.where(or_(like, user_like))
    if tag:
        stmt = stmt.where(
            Credential.id.in_(
                select(CredentialTag.credential_id)
                .join(Tag, Tag.id == CredentialTag.tag_id)
                .where(_ci(Tag.name, tag))
            )
        )
    return stmt


def credential_tags_of(
    session: Session, credential_ids: Collection[int]
) -> dict[int, list[dict[str, Any]]]:
    """The tag links of each credential with the tag's name, by priority, in one query."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not credential_ids:
        return out
    rows = session.execute(
        select(CredentialTag, Tag.name)
        .join(Tag, Tag.id == CredentialTag.tag_id)
        .where(CredentialTag.credential_id.in_(list(credential_ids)))
        .order_by(CredentialTag.priority, Tag.name)
    )
    for link, name in rows:
        out[link.credential_id].append(
            {
                "tag_id": link.tag_id,
                "tag": name,
                "priority": link.priority,
                "success_count": link.success_count,
                "failure_count": link.failure_count,
            }
        )
    return out


def credential_links(session: Session, credential_id: int) -> list[CredentialTag]:
    """The credential_tags rows of one credential."""
    return list(
        session.scalars(select(CredentialTag).where(CredentialTag.credential_id == credential_id))
    )


def credentials_by_ids(session: Session, ids: Collection[int]) -> dict[int, Credential]:
    """Credentials by id."""
    out: dict[int, Credential] = {}
    for part in chunks(sorted(set(ids))):
        for row in session.scalars(select(Credential).where(Credential.id.in_(list(part)))):
            out[row.id] = row
    return out


def all_credential_ids(session: Session) -> list[int]:
    """Every credential's id, in order."""
    return list(session.scalars(select(Credential.id).order_by(Credential.id)))


def candidate_rows(session: Session, device_ids: Collection[int]) -> list[tuple[Any, ...]]:
    """(device id, credential id, tag id, tag name, priority, link successes, link failures,
    credential successes, credential failures) for every credential linked to a device's tags."""
    out: list[tuple[Any, ...]] = []
    for part in chunks(sorted(set(device_ids))):
        rows = session.execute(
            select(
                DeviceTag.device_id,
                CredentialTag.credential_id,
                CredentialTag.tag_id,
                Tag.name,
                CredentialTag.priority,
                CredentialTag.success_count,
                CredentialTag.failure_count,
                Credential.success_count,
                Credential.failure_count,
            )
            .join(CredentialTag, CredentialTag.tag_id == DeviceTag.tag_id)
            .join(Credential, Credential.id == CredentialTag.credential_id)
            .join(Tag, Tag.id == DeviceTag.tag_id)
            .where(DeviceTag.device_id.in_(list(part)))
        )
        out.extend(tuple(r) for r in rows)
    return out


# -- devices -----------------------------------------------------------------------------------


def device_rows(session: Session, device_ids: Collection[int]) -> list[tuple[Any, ...]]:
    """(id, name, address, port, device platform, type platform, type command, last credential)
    of the given devices, by name."""
    out: list[tuple[Any, ...]] = []
    for part in chunks(sorted(set(device_ids))):
        rows = session.execute(
            select(
                Device.id,
                Device.name,
                Device.mgmt_address,
                Device.ssh_port,
                Device.platform,
                DeviceType.platform,
                DeviceType.config_command,
                Device.last_credential_id,
            )
            .join(DeviceType, DeviceType.id == Device.device_type_id)
            .where(Device.id.in_(list(part)))
        )
        out.extend(tuple(r) for r in rows)
    return sorted(out, key=lambda r: (r[1], r[0]))


def device_names(session: Session, device_ids: Collection[int]) -> dict[int, str]:
    """Device names by id."""
    out: dict[int, str] = {}
    for part in chunks(sorted(set(device_ids))):
        rows = session.execute(select(Device.id, Device.name).where(Device.id.in_(list(part))))
        out.update({i: n for i, n in rows})
    return out


def device_by_name(session: Session, name: str) -> Device | None:
    """A device by name, ignoring case."""
    return session.scalar(select(Device).where(_ci(Device.name, name)))


def active_device_ids(session: Session, *, tag_ids: Collection[int] | None = None) -> list[int]:
    """Devices that are not retired: all of them, or those carrying any of some tags."""
    stmt = select(Device.id).where(Device.status != RETIRED).order_by(Device.id)
    if tag_ids is not None:
        if not tag_ids:
            return []
        stmt = stmt.where(
            Device.id.in_(select(DeviceTag.device_id).where(DeviceTag.tag_id.in_(list(tag_ids))))
        )
    return list(session.scalars(stmt))


def existing_device_ids(session: Session, device_ids: Collection[int]) -> list[int]:
    """Which of these device ids exist."""
    out: list[int] = []
    for part in chunks(sorted(set(device_ids))):
        out.extend(session.scalars(select(Device.id).where(Device.id.in_(list(part)))))
    return sorted(out)


def tags_by_names(session: Session, names: Collection[str]) -> dict[str, Tag]:
    """Tags by name, keyed by lower-case name."""
    if not names:
        return {}
    lowered = sorted({n.lower() for n in names})
    rows = session.scalars(select(Tag).where(func.lower(Tag.name).in_(lowered)))
    return {t.name.lower(): t for t in rows}


def tag_names(session: Session, tag_ids: Collection[int]) -> dict[int, str]:
    """Tag names by id."""
    if not tag_ids:
        return {}
    rows = session.execute(select(Tag.id, Tag.name).where(Tag.id.in_(list(tag_ids))))
    return {i: n for i, n in rows}


# -- stored versions ---------------------------------------------------------------------------


def _latest_ids() -> Select[Any]:
    """Per device: the id of its newest version."""
    newest = (
        select(ConfigBackup.device_id, func.max(ConfigBackup.version).label("version"))
        .group_by(ConfigBackup.device_id)
        .subquery()
    )
    return select(ConfigBackup.id).join(
        newest,
        and_(
            newest.c.device_id == ConfigBackup.device_id,
            newest.c.version == ConfigBackup.version,
        ),
    )


def latest_versions(
    session: Session, device_ids: Collection[int]
) -> dict[int, tuple[int, int, str]]:
    """Per device: (backup id, version, content hash) of its newest version."""
    out: dict[int, tuple[int, int, str]] = {}
    for part in chunks(sorted(set(device_ids))):
        newest = (
            select(ConfigBackup.device_id, func.max(ConfigBackup.version).label("version"))
            .where(ConfigBackup.device_id.in_(list(part)))
            .group_by(ConfigBackup.device_id)
            .subquery()
        )
        rows = session.execute(
            select(
                ConfigBackup.device_id,
                ConfigBackup.id,
                ConfigBackup.version,
                ConfigBackup.content_hash,
            ).join(
                newest,
                and_(
                    newest.c.device_id == ConfigBackup.device_id,
                    newest.c.version == ConfigBackup.version,
                ),
            )
        )
        out.update({d: (i, v, h) for d, i, v, h in rows})
    return out


def contents(session: Session, backup_ids: Collection[int]) -> dict[int, str]:
    """The configuration text of some versions, by backup id."""
    out: dict[int, str] = {}
    for part in chunks(sorted(set(backup_ids)), 100):
        rows = session.execute(
            select(ConfigBackup.id, ConfigBackup.content).where(ConfigBackup.id.in_(list(part)))
        )
        out.update({i: c for i, c in rows})
    return out


def backups_query(
    *,
    device_id: int | None = None,
    latest_only: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Rows:
    """Stored versions (without their text) with the device's name, newest first."""
    stmt: Rows = (
        select(ConfigBackup, Device.name)
        .join(Device, Device.id == ConfigBackup.device_id)
        .options(defer(ConfigBackup.content))
        .order_by(ConfigBackup.collected_at.desc(), ConfigBackup.id.desc())
    )
    if device_id is not None:
        stmt = stmt.where(ConfigBackup.device_id == device_id)
    if latest_only:
        stmt = stmt.where(ConfigBackup.id.in_(_latest_ids()))
    if since is not None:
        stmt = stmt.where(ConfigBackup.collected_at >= since)
    if until is not None:
        stmt = stmt.where(ConfigBackup.collected_at < until)
    return stmt


GOOD_STATES = ("changed", "unchanged")


def devices_backup_query(*, q: str | None = None, failed: bool = False) -> Rows:
    """Devices by name with their last backup state and newest stored version (id, number,
    time); `failed` keeps those whose last attempt failed."""
    newest = (
        select(
            ConfigBackup.device_id,
            func.max(ConfigBackup.version).label("version"),
            func.count().label("versions"),
        )
        .group_by(ConfigBackup.device_id)
        .subquery()
    )
    latest = aliased(ConfigBackup)
    stmt: Rows = (
        select(
            Device.id,
            Device.name,
            Device.mgmt_address,
            Device.platform,
            Device.last_backup_at,
            Device.last_backup_status,
            latest.id.label("backup_id"),
            latest.version,
            latest.collected_at,
            newest.c.versions,
        )
        .outerjoin(newest, newest.c.device_id == Device.id)
        .outerjoin(
            latest,
            and_(latest.device_id == Device.id, latest.version == newest.c.version),
        )
        .order_by(Device.name, Device.id)
    )
    if q:
        stmt = stmt.where(func.lower(Device.name).contains(q.lower(), autoescape=True))
    if failed:
        stmt = stmt.where(
            Device.last_backup_status.is_not(None),
            Device.last_backup_status.not_in(GOOD_STATES),
        )
    return stmt


def previous_backup_id(session: Session, device_id: int, version: int) -> int | None:
    """The id of a device's version just before `version`."""
    return session.scalar(
        select(ConfigBackup.id)
        .where(ConfigBackup.device_id == device_id, ConfigBackup.version < version)
        .order_by(ConfigBackup.version.desc())
        .limit(1)
    )


def backup_with_device(session: Session, backup_id: int) -> tuple[ConfigBackup, str] | None:
    """One version (with its text) and its device's name."""
    row = session.execute(
        select(ConfigBackup, Device.name)
        .join(Device, Device.id == ConfigBackup.device_id)
        .where(ConfigBackup.id == backup_id)
    ).first()
    return None if row is None else (row[0], row[1])


def backup_by_version(session: Session, device_id: int, version: int) -> ConfigBackup | None:
    """A device's version by number."""
    return session.scalar(
        select(ConfigBackup).where(
            ConfigBackup.device_id == device_id, ConfigBackup.version == version
        )
    )


def latest_backup(session: Session, device_id: int) -> ConfigBackup | None:
    """A device's newest version."""
    return session.scalar(
        select(ConfigBackup)
        .where(ConfigBackup.device_id == device_id)
        .order_by(ConfigBackup.version.desc())
        .limit(1)
    )


def search_query(words: list[str], *, backend: str, device_id: int | None = None) -> Rows:
    """Newest versions whose text holds every word: full-text on PostgreSQL, LIKE elsewhere."""
    stmt: Rows = (
        select(ConfigBackup, Device.name)
        .join(Device, Device.id == ConfigBackup.device_id)
        .where(ConfigBackup.id.in_(_latest_ids()))
        .order_by(Device.name, Device.id)
    )
    if backend == "postgresql":
        stmt = stmt.where(
            func.to_tsvector(literal_column("'simple'"), ConfigBackup.content).op("@@")(
                func.plainto_tsquery(literal_column("'simple'"), " ".join(words))
            )
        )
    else:
        for word in words:
            stmt = stmt.where(
                func.lower(ConfigBackup.content).contains(word.lower(), autoescape=True)
            )
    if device_id is not None:
        stmt = stmt.where(ConfigBackup.device_id == device_id)
    return stmt


def over_count(session: Session, keep: int, *, limit: int) -> list[int]:
    """Ids of versions beyond the newest `keep` of their device, oldest first."""
    crowded = (
        select(ConfigBackup.device_id, func.max(ConfigBackup.version).label("newest"))
        .group_by(ConfigBackup.device_id)
        .having(func.count() > keep)
        .subquery()
    )
    return list(
        session.scalars(
            select(ConfigBackup.id)
            .join(crowded, crowded.c.device_id == ConfigBackup.device_id)
            .where(ConfigBackup.version <= crowded.c.newest - keep)
            .order_by(ConfigBackup.id)
            .limit(limit)
        )
    )


def superseded_before(session: Session, cutoff: datetime, *, limit: int) -> list[int]:
    """Ids of versions that a newer version replaced before `cutoff` (never a newest one)."""
    newer = aliased(ConfigBackup)
    return list(
        session.scalars(
            select(ConfigBackup.id)
            .where(
                select(newer.id)
                .where(
                    newer.device_id == ConfigBackup.device_id,
                    newer.version > ConfigBackup.version,
                    newer.collected_at < cutoff,
                )
                .exists()
            )
            .order_by(ConfigBackup.id)
            .limit(limit)
        )
    )


def versions_for_export(session: Session, *, after_id: int) -> Iterator[tuple[Any, ...]]:
    """(id, device id, device name, version, content, collected at, job log id, added, removed)
    of every version after an id, oldest first, streamed."""
    stmt = (
        select(
            ConfigBackup.id,
            ConfigBackup.device_id,
            Device.name,
            ConfigBackup.version,
            ConfigBackup.content,
            ConfigBackup.collected_at,
            ConfigBackup.job_log_id,
            ConfigBackup.lines_added,
            ConfigBackup.lines_removed,
        )
        .join(Device, Device.id == ConfigBackup.device_id)
        .where(ConfigBackup.id > after_id)
        .order_by(ConfigBackup.id)
        .execution_options(yield_per=200)
    )
    for row in session.execute(stmt):
        yield tuple(row)


# -- runs --------------------------------------------------------------------------------------


def lock_run(session: Session, job_log_id: int) -> None:
    """Lock a run's row until the transaction ends (SQLite's write transactions queue anyway)."""
    session.execute(select(JobLog.id).where(JobLog.id == job_log_id).with_for_update())


def recorded_devices(session: Session, job_log_id: int, device_ids: Collection[int]) -> set[int]:
    """Which of these devices already have their result entry in a run's log."""
    out: set[int] = set()
    for part in chunks(sorted(set(device_ids))):
        out.update(
            d
            for d in session.scalars(
                select(JobLogEntry.device_id).where(
                    JobLogEntry.job_log_id == job_log_id,
                    JobLogEntry.category == DEVICE_ENTRY,
                    JobLogEntry.device_id.in_(list(part)),
                )
            )
            if d is not None
        )
    return out


def run_counters(session: Session, job_log_id: int) -> dict[str, int] | None:
    """A run's progress counters as stored."""
    row = session.execute(
        select(JobLog.total, JobLog.done, JobLog.changed, JobLog.unchanged, JobLog.failed).where(
            JobLog.id == job_log_id
        )
    ).first()
    if row is None:
        return None
    return dict(zip(("total", "done", "changed", "unchanged", "failed"), row, strict=True))


def run_states(session: Session, job_log_ids: Collection[int]) -> dict[int, tuple[str, bool]]:
    """(status, cancel requested) of some runs."""
    out: dict[int, tuple[str, bool]] = {}
    for part in chunks(sorted(set(job_log_ids))):
        rows = session.execute(
            select(JobLog.id, JobLog.status, JobLog.cancel_requested).where(
                JobLog.id.in_(list(part))
            )
        )
        out.update({i: (s, bool(c)) for i, s, c in rows})
    return out


def device_entries(session: Session, job_log_id: int) -> list[JobLogEntry]:
    """The per-device result entries of a run, in order."""
    return list(
        session.scalars(
            select(JobLogEntry)
            .where(JobLogEntry.job_log_id == job_log_id, JobLogEntry.category == DEVICE_ENTRY)
            .order_by(JobLogEntry.id)
        )
    )


# -- scheduled jobs ----------------------------------------------------------------------------


def scheduled_job_by_name(session: Session, name: str) -> ScheduledJob | None:
    """A scheduled job by name, ignoring case."""
    return session.scalar(select(ScheduledJob).where(_ci(ScheduledJob.name, name)))


def scheduled_jobs_query(
    *, enabled: bool | None = None, job_type: str | None = None, q: str | None = None
) -> Rows:
    """Scheduled jobs with their device's name, by name."""
    stmt: Rows = (
        select(ScheduledJob, Device.name)
        .outerjoin(Device, Device.id == ScheduledJob.device_id)
        .order_by(ScheduledJob.name, ScheduledJob.id)
    )
    if enabled is not None:
        stmt = stmt.where(ScheduledJob.enabled == enabled)
    if job_type:
        stmt = stmt.where(ScheduledJob.job_type == job_type)
    if q:
        stmt = stmt.where(func.lower(ScheduledJob.name).contains(q.lower(), autoescape=True))
    return stmt


def scheduled_job_with_device(
    session: Session, job_id: int
) -> tuple[ScheduledJob, str | None] | None:
    """A scheduled job and its device's name."""
    row = session.execute(scheduled_jobs_query().where(ScheduledJob.id == job_id)).first()
    return None if row is None else (row[0], row[1])


def job_tags(session: Session, job_ids: Collection[int]) -> dict[int, list[tuple[int, str]]]:
    """(tag id, name) of each scheduled job's target tags, by name, in one query."""
    out: dict[int, list[tuple[int, str]]] = defaultdict(list)
    if not job_ids:
        return out
    rows = session.execute(
        select(ScheduledJobTag.scheduled_job_id, Tag.id, Tag.name)
        .join(Tag, Tag.id == ScheduledJobTag.tag_id)
        .where(ScheduledJobTag.scheduled_job_id.in_(list(job_ids)))
        .order_by(Tag.name)
    )
    for job_id, tag_id, name in rows:
        out[job_id].append((tag_id, name))
    return out


def job_tag_rows(session: Session, job_id: int) -> list[ScheduledJobTag]:
    """The scheduled_job_tags rows of one job."""
    return list(
        session.scalars(select(ScheduledJobTag).where(ScheduledJobTag.scheduled_job_id == job_id))
    )


def due_jobs(session: Session, now: datetime, *, limit: int = 100) -> list[ScheduledJob]:
    """Enabled scheduled jobs whose next run time has come, oldest due first."""
    return list(
        session.scalars(
            select(ScheduledJob)
            .where(
                ScheduledJob.enabled.is_(True),
                ScheduledJob.next_run_at.is_not(None),
                ScheduledJob.next_run_at <= now,
            )
            .order_by(ScheduledJob.next_run_at, ScheduledJob.id)
            .limit(limit)
        )
    )
