"""Change-only storage of collected configurations, and what to collect from each device.

`plan()` decides, per device, the address, platform and the credentials to try in order. After
collection, `prepare()` cleans each configuration (noise dropped, secrets masked at the value)
and hashes it outside any transaction; `store()` then writes one small batch of results in the
caller's transaction: new versions only where the hash changed (numbered max(version) + 1 under
the unique (device_id, version) constraint), the devices' backup state, the credentials'
counters, one job log entry per device and the run's counters. A device whose result is already
in the run's log is skipped, so every result is recorded once even when two workers race.
Nothing is ever deleted or overwritten here: a failure only updates the device's state.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, update
from sqlalchemy.orm import Session

from labkeeper.backups import diff, repository
from labkeeper.backups.models import ConfigBackup, Credential, CredentialTag
from labkeeper.core import security
from labkeeper.drivers.base import Credential as LoginCredential
from labkeeper.drivers.base import Result
from labkeeper.drivers.cli.normalize import normalize
from labkeeper.inventory.models import Device
from labkeeper.jobs.models import JobLog, JobLogEntry

log = logging.getLogger(__name__)

GENERIC = "generic"
OK_STATUSES = ("changed", "unchanged")
# Failure classes found before any SSH session is attempted.
NO_ADDRESS = "no_address"
NO_CREDENTIALS = "no_credentials"
LOST = "lost"
NO_SYNC = {"synchronize_session": False}


@dataclass(slots=True)
class Plan:
    """What to collect from one device and how."""

    device_id: int
    name: str
    host: str | None
    port: int
    platform: str
    command: str | None
    # (credential id, id of the tag that selected it), in the order they are tried.
    candidates: list[tuple[int, int | None]] = field(default_factory=list)
    # (failure class, message) when the device cannot be collected at all.
    problem: tuple[str, str] | None = None

    def tag_of(self, credential_id: int | None) -> int | None:
        """The tag through which a credential was chosen for this device."""
        for cred, tag in self.candidates:
            if cred == credential_id:
                return tag
        return None


@dataclass(slots=True)
class Outcome:
    """What happened to one device in one run."""

    plan: Plan
    ok: bool
    collected_at: datetime
    raw: str = ""
    code: str | None = None
    message: str = ""
    credential_id: int | None = None
    tried: list[int] = field(default_factory=list)
    attempts: int = 0
    duration_s: float = 0.0
    content: str | None = None
    content_hash: str | None = None


def _rate(success: int, failure: int) -> float:
    # A credential never tried sits between one that always works and one that never does.
    return success / (success + failure) if success + failure else 0.5


def order_candidates(
    rows: Iterable[tuple[Any, ...]], last_credential_id: int | None
) -> list[tuple[int, int | None]]:
    """Credentials for one device: by tag priority, then success rate; the last good one first.

    `rows` are (credential id, tag id, priority, link successes, link failures, credential
    successes, credential failures); a credential reached through several tags counts once,
    with its best link.
    """
    best: dict[int, tuple[tuple[float, ...], int]] = {}
    for cred, tag, priority, l_ok, l_fail, c_ok, c_fail in rows:
        key = (float(priority), -_rate(l_ok, l_fail), -_rate(c_ok, c_fail), float(cred))
        if cred not in best or key < best[cred][0]:
            best[cred] = (key, tag)
    ordered: list[tuple[int, int | None]] = [
        (cred, tag) for cred, (_, tag) in sorted(best.items(), key=lambda kv: kv[1][0])
    ]
    for index, (cred, _tag) in enumerate(ordered):
        if cred == last_credential_id and index:
            ordered.insert(0, ordered.pop(index))
            break
    return ordered


def plan(session: Session, device_ids: Sequence[int]) -> list[Plan]:
    """What to collect from each device, in constant queries whatever the count."""
    rows = repository.device_rows(session, device_ids)
    by_device: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for device_id, *rest in repository.candidate_rows(session, device_ids):
        cred, tag, _tag_name, priority, l_ok, l_fail, c_ok, c_fail = rest
        by_device[device_id].append((cred, tag, priority, l_ok, l_fail, c_ok, c_fail))
    plans = []
    for device_id, name, address, port, platform, type_platform, command, last_cred in rows:
        item = Plan(
            device_id=device_id,
            name=name,
            host=(address or "").strip().removeprefix("[").removesuffix("]") or None,
            port=port or 22,
            platform=platform or type_platform or GENERIC,
            command=command or None,
            candidates=order_candidates(by_device.get(device_id, []), last_cred),
        )
        if item.host is None:
            item.problem = (NO_ADDRESS, "the device has no management address")
        elif not item.candidates:
            item.problem = (
                NO_CREDENTIALS,
                "no credential matches the device's tags; link a credential to one of its tags",
            )
        plans.append(item)
    return plans


def login_credentials(
    session: Session, plans: Iterable[Plan]
) -> tuple[dict[int, LoginCredential], dict[int, str]]:
    """Decrypted logins for every candidate of the plans, and those no key can open."""
    wanted = {cred for p in plans for cred, _ in p.candidates}
    logins: dict[int, LoginCredential] = {}
    broken: dict[int, str] = {}
    for cred_id, row in repository.credentials_by_ids(session, wanted).items():
        try:
            logins[cred_id] = LoginCredential(
                id=cred_id,
                username=row.username,
                password=security.decrypt(row.password_enc) if row.password_enc else "",
                enable_secret=(
                    security.decrypt(row.enable_secret_enc) if row.enable_secret_enc else None
                ),
                ssh_key=security.decrypt(row.ssh_key_enc) if row.ssh_key_enc else None,
            )
        except ValueError:
            broken[cred_id] = row.name
    return logins, broken


def drop_unusable(plans: Iterable[Plan], logins: dict[int, LoginCredential]) -> None:
    """Remove candidates that cannot be decrypted; a device left with none gets a problem."""
    for item in plans:
        if item.problem is not None:
            continue
        usable = [(c, t) for c, t in item.candidates if c in logins]
        if not usable:
            item.problem = (
                NO_CREDENTIALS,
                "none of the matching credentials can be decrypted with the configured keys",
            )
        item.candidates = usable


def failure(plan_: Plan, code: str, message: str, *, now: datetime) -> Outcome:
    """An outcome for a device that failed without (or before) a collection."""
    return Outcome(plan=plan_, ok=False, collected_at=now, code=code, message=message)


def from_result(plan_: Plan, result: Result, *, now: datetime) -> Outcome:
    """An outcome from a driver's Result."""
    tried = [c for c in result.details.get("tried_credentials", []) if c is not None]
    return Outcome(
        plan=plan_,
        ok=result.ok,
        collected_at=now,
        raw=result.output if result.ok else "",
        code=None if result.ok else (result.code or "internal"),
        message=result.message,
        credential_id=result.credential_id if result.ok else None,
        tried=tried,
        attempts=result.attempts,
        duration_s=result.duration_s,
    )


def prepare(outcome: Outcome) -> Outcome:
    """Clean and hash a collected configuration (CPU work, kept out of transactions)."""
    if outcome.ok and outcome.content is None:
        text = normalize(outcome.plan.platform, outcome.raw)
        outcome.raw = ""
        if not text.strip():
            outcome.ok = False
            outcome.code = "command_failed"
            outcome.message = "the device answered without any configuration lines"
        else:
            outcome.content = text
            # normalize() returns canonical text already: hashing it is config_hash(text).
            outcome.content_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return outcome


def _credential_counts(
    outcomes: Iterable[Outcome],
) -> tuple[dict[int, list[int]], dict[tuple[int, int], list[int]]]:
    per_cred: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    per_link: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for o in outcomes:
        # Every credential tried before the last one was refused (only a refusal moves on);
        # the last one worked, was refused too (auth), or met a failure that is not its fault.
        refused = o.tried if o.code == "auth" else o.tried[:-1]
        for cred in refused:
            per_cred[cred][1] += 1
            tag = o.plan.tag_of(cred)
            if tag is not None:
                per_link[(cred, tag)][1] += 1
        if o.ok and o.credential_id is not None:
            per_cred[o.credential_id][0] += 1
            tag = o.plan.tag_of(o.credential_id)
            if tag is not None:
                per_link[(o.credential_id, tag)][0] += 1
    return per_cred, per_link


def _message(o: Outcome, status: str, version: int | None, cred_names: dict[int, str]) -> str:
    seconds = f"{o.duration_s:.2f} s"
    if status == "changed":
        used = cred_names.get(o.credential_id or 0, "?")
        return f"{o.plan.name}: changed, stored version {version} (credential {used}, {seconds})"
    if status == "unchanged":
        used = cred_names.get(o.credential_id or 0, "?")
        return f"{o.plan.name}: unchanged (credential {used}, {seconds})"
    return f"{o.plan.name}: {status}: {o.message}"


def store(
    session: Session,
    *,
    job_log_id: int,
    outcomes: Sequence[Outcome],
    automatic: bool,
    worker: str,
    now: datetime,
) -> dict[str, int]:
    """Record one batch of results in the caller's transaction; the counters it added."""
    counts = {"done": 0, "changed": 0, "unchanged": 0, "failed": 0}
    seen: set[int] = set()
    batch: list[Outcome] = []
    for o in outcomes:
        if o.plan.device_id not in seen:
            seen.add(o.plan.device_id)
            batch.append(o)
    # Batches of one run take turns (workers may report into one run at once), so "already
    # recorded?" and the insert that follows cannot interleave with another batch's.
    repository.lock_run(session, job_log_id)
    already = repository.recorded_devices(session, job_log_id, seen)
    existing = set(repository.existing_device_ids(session, seen))
    batch = [o for o in batch if o.plan.device_id not in already and o.plan.device_id in existing]
    if not batch:
        return counts

    ok = [o for o in batch if o.ok and o.content_hash is not None]
    # A credential deleted while the run went on is not referenced by what gets stored.
    cred_names = {
        c: row.name
        for c, row in repository.credentials_by_ids(
            session, {o.credential_id for o in ok if o.credential_id is not None}
        ).items()
    }
    for o in ok:
        if o.credential_id not in cred_names:
            o.credential_id = None
    latest = repository.latest_versions(session, [o.plan.device_id for o in ok])
    changed = [
        o
        for o in ok
        if o.plan.device_id not in latest or latest[o.plan.device_id][2] != o.content_hash
    ]
    previous = repository.contents(
        session, [latest[o.plan.device_id][0] for o in changed if o.plan.device_id in latest]
    )
    new_rows: dict[int, ConfigBackup] = {}
    for o in changed:
        assert o.content is not None and o.content_hash is not None
        before = latest.get(o.plan.device_id)
        added, removed = diff.stats(previous.get(before[0]) if before else None, o.content)
        new_rows[o.plan.device_id] = ConfigBackup(
            device_id=o.plan.device_id,
            version=(before[1] if before else 0) + 1,
            content=o.content,
            content_hash=o.content_hash,
            size_bytes=len(o.content.encode("utf-8")),
            line_count=o.content.count("\n"),
            lines_added=added,
            lines_removed=removed,
            platform=o.plan.platform,
            collected_at=o.collected_at,
            credential_id=o.credential_id,
            job_log_id=job_log_id,
            is_automatic=automatic,
            created_at=now,
        )
    if new_rows:
        session.add_all(new_rows.values())
        session.flush()

    # Counters first, in id order: concurrent batches lock these shared rows alike.
    per_cred, per_link = _credential_counts(batch)
    if per_cred:
        creds = cast(Table, Credential.__table__)
        stmt = (
            update(creds)
            .where(creds.c.id == bindparam("b_id"))
            .values(
                success_count=creds.c.success_count + bindparam("b_ok"),
                failure_count=creds.c.failure_count + bindparam("b_fail"),
                last_used_at=bindparam("b_now"),
                last_success_at=func.coalesce(
                    bindparam("b_success_at", type_=creds.c.last_success_at.type),
                    creds.c.last_success_at,
                ),
            )
        )
        session.execute(
            stmt,
            [
                {
                    "b_id": cred,
                    "b_ok": n_ok,
                    "b_fail": n_fail,
                    "b_now": now,
                    "b_success_at": now if n_ok else None,
                }
                for cred, (n_ok, n_fail) in sorted(per_cred.items())
            ],
        )
    if per_link:
        table = cast(Table, CredentialTag.__table__)
        session.execute(
            update(table)
            .where(
                table.c.credential_id == bindparam("b_cred"), table.c.tag_id == bindparam("b_tag")
            )
            .values(
                success_count=table.c.success_count + bindparam("b_ok"),
                failure_count=table.c.failure_count + bindparam("b_fail"),
            ),
            [
                {"b_cred": cred, "b_tag": tag, "b_ok": n_ok, "b_fail": n_fail}
                for (cred, tag), (n_ok, n_fail) in sorted(per_link.items())
            ],
        )

    device_updates: list[dict[str, Any]] = []
    good_updates: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for o in sorted(batch, key=lambda o: o.plan.device_id):
        device_id = o.plan.device_id
        row = new_rows.get(device_id)
        if o.ok and o.content_hash is not None:
            status = "changed" if row is not None else "unchanged"
            counts[status] += 1
            good_updates.append(
                {
                    "id": device_id,
                    "last_backup_at": o.collected_at,
                    "last_backup_status": status,
                    "last_credential_id": o.credential_id,
                }
            )
        else:
            status = o.code or "internal"
            counts["failed"] += 1
            device_updates.append(
                {"id": device_id, "last_backup_at": o.collected_at, "last_backup_status": status}
            )
        counts["done"] += 1
        version = (
            row.version
            if row is not None
            else (latest[device_id][1] if device_id in latest else None)
        )
        entries.append(
            {
                "job_log_id": job_log_id,
                "created_at": now,
                "level": "info" if status in OK_STATUSES else "error",
                "category": repository.DEVICE_ENTRY,
                "device_id": device_id,
                "message": _message(o, status, version, cred_names),
                "details": {
                    "device": o.plan.name,
                    "status": status,
                    "failure": None if status in OK_STATUSES else status,
                    "version": version,
                    "backup_id": row.id if row is not None else None,
                    "lines_added": row.lines_added if row is not None else 0,
                    "lines_removed": row.lines_removed if row is not None else 0,
                    "credential_id": o.credential_id,
                    "credential": cred_names.get(o.credential_id or 0),
                    "tried_credentials": o.tried,
                    "attempts": o.attempts,
                    "duration_ms": round(o.duration_s * 1000, 1),
                    "platform": o.plan.platform,
                    "host": o.plan.host,
                    "port": o.plan.port,
                    "worker": worker,
                },
            }
        )
    for params in (good_updates, device_updates):
        if params:
            session.execute(update(Device), params, execution_options=NO_SYNC)
    session.execute(insert(JobLogEntry), entries)
    session.execute(
        update(JobLog)
        .where(JobLog.id == job_log_id)
        .values(
            done=JobLog.done + counts["done"],
            changed=JobLog.changed + counts["changed"],
            unchanged=JobLog.unchanged + counts["unchanged"],
            failed=JobLog.failed + counts["failed"],
        ),
        execution_options=NO_SYNC,
    )
    session.flush()
    return counts
