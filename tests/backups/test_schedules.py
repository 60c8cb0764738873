"""Scheduled jobs: CRUD, next runs in the lab's time zone, firing once, run now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from labkeeper.admin import service as settings
from labkeeper.backups import service
from labkeeper.backups.models import ConfigBackup
from labkeeper.core.audit import SYSTEM
from labkeeper.core.time import utcnow
from labkeeper.jobs.engine import Scheduler, run_job
from labkeeper.jobs.models import JobLog, ScheduledJob
from tests.backups.conftest import add_credential, add_devices

JOBS = "/scheduled-jobs"
DUBLIN = ZoneInfo("Europe/Dublin")


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "now", "expected"),
    [
        # 09:30 in Dublin is 08:30 UTC in summer (IST) and 09:30 UTC in winter (GMT).
        (
            {"schedule_type": "daily", "time_of_day": "09:30"},
            _utc(2026, 7, 1, 8, 0),
            _utc(2026, 7, 1, 8, 30),
        ),
        (
            {"schedule_type": "daily", "time_of_day": "09:30"},
            _utc(2026, 7, 1, 8, 30),
            _utc(2026, 7, 2, 8, 30),
        ),
        (
            {"schedule_type": "daily", "time_of_day": "09:30"},
            _utc(2026, 1, 5, 12, 0),
            _utc(2026, 1, 6, 9, 30),
        ),
        # Across the spring change (29 March 2026): same wall-clock time, an hour earlier in UTC.
        (
            {"schedule_type": "daily", "time_of_day": "09:30"},
            _utc(2026, 3, 28, 10, 0),
            _utc(2026, 3, 29, 8, 30),
        ),
        # Weekly: Monday is 0; 1 July 2026 is a Wednesday.
        (
            {"schedule_type": "weekly", "time_of_day": "06:00", "day_of_week": 0},
            _utc(2026, 7, 1, 12, 0),
            _utc(2026, 7, 6, 5, 0),
        ),
        (
            {"schedule_type": "weekly", "time_of_day": "23:00", "day_of_week": 2},
            _utc(2026, 7, 1, 12, 0),
            _utc(2026, 7, 1, 22, 0),
        ),
        # Monthly on the 31st: clamped to the last day of shorter months.
        (
            {"schedule_type": "monthly", "time_of_day": "01:00", "day_of_month": 31},
            _utc(2026, 2, 10, 0, 0),
            _utc(2026, 2, 28, 1, 0),
        ),
        (
            {"schedule_type": "monthly", "time_of_day": "01:00", "day_of_month": 15},
            _utc(2026, 12, 20, 0, 0),
            _utc(2027, 1, 15, 1, 0),
        ),
        # Cron in the lab's time zone.
        (
            {"schedule_type": "cron", "cron_expression": "0 2 * * 1-5"},
            _utc(2026, 7, 3, 12, 0),
            _utc(2026, 7, 6, 1, 0),
        ),
        (
            {"schedule_type": "cron", "cron_expression": "@daily"},
            _utc(2026, 1, 5, 12, 0),
            _utc(2026, 1, 6, 0, 0),
        ),
        (
            {"schedule_type": "interval", "interval_seconds": 3600},
            _utc(2026, 7, 1, 8, 0),
            _utc(2026, 7, 1, 9, 0),
        ),
        (
            {"schedule_type": "once", "run_at": _utc(2026, 9, 1, 7, 0)},
            _utc(2026, 7, 1, 8, 0),
            _utc(2026, 9, 1, 7, 0),
        ),
    ],
)
def test_next_run_of_every_schedule_type_in_the_lab_time_zone(fields, now, expected):
    assert service.next_run(now=now, tz=DUBLIN, **fields) == expected


def test_next_run_after_a_run():
    now = _utc(2026, 7, 1, 8, 0)
    once = {"schedule_type": "once", "run_at": now}
    assert service.next_run(now=now, tz=DUBLIN, last_run_at=now, **once) is None
    every = {"schedule_type": "interval", "interval_seconds": 600}
    assert service.next_run(now=now, tz=DUBLIN, last_run_at=now, **every) == now + timedelta(
        minutes=10
    )
    # Far behind (the lab was down): due now, not a burst of missed runs.
    stale = now - timedelta(days=1)
    assert service.next_run(now=now, tz=DUBLIN, last_run_at=stale, **every) == now


def _local(value: str, tz: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(ZoneInfo(tz))


def test_scheduled_jobs_crud_with_next_run_shown_in_lab_time(db, api, make_user):
    with db.scope() as s:
        settings.put(s, key="general.lab_timezone", value="Asia/Tokyo", actor=SYSTEM)
    (device_id,) = add_devices(db, None, names=["r1"], ports=[None], tags=("core",))
    before = utcnow()

    daily = api.call(
        "POST",
        JOBS,
        201,
        json={
            "name": "nightly",
            "schedule_type": "daily",
            "time_of_day": "02:30",
            "target_type": "tags",
            "tags": ["core"],
            "cron_expression": "ignored",
        },
    )
    assert daily["timezone"] == "Asia/Tokyo" and daily["tags"] == ["core"]
    assert daily["cron_expression"] is None  # fields of other schedule types are cleared
    local = _local(daily["next_run_at"], "Asia/Tokyo")
    assert (local.hour, local.minute) == (2, 30)
    assert before < datetime.fromisoformat(daily["next_run_at"]) <= before + timedelta(days=1)

    weekly = api.call(
        "POST",
        JOBS,
        201,
        json={
            "name": "weekly",
            "schedule_type": "weekly",
            "time_of_day": "06:00",
            "day_of_week": 6,
            "target_type": "device",
            "device_id": device_id,
        },
    )
    local = _local(weekly["next_run_at"], "Asia/Tokyo")
    assert (local.weekday(), local.hour) == (6, 6) and weekly["device_name"] == "r1"
    monthly = api.call(
        "POST",
        JOBS,
        201,
        json={
            "name": "monthly",
            "schedule_type": "monthly",
            "time_of_day": "00:15",
            "day_of_month": 1,
        },
    )
    assert _local(monthly["next_run_at"], "Asia/Tokyo").day == 1
    cron = api.call(
        "POST",
        JOBS,
        201,
        json={
            "name": "cron",
            "schedule_type": "cron",
            "cron_expression": "*/15 * * * *",
            "job_type": "reachability",
        },
    )
    assert _local(cron["next_run_at"], "Asia/Tokyo").minute % 15 == 0
    interval = api.call(
        "POST",
        JOBS,
        201,
        json={"name": "hourly", "schedule_type": "interval", "interval_seconds": 3600},
    )
    gap = datetime.fromisoformat(interval["next_run_at"]) - before
    assert timedelta(minutes=59) < gap < timedelta(minutes=61)
    at = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    once = api.call(
        "POST", JOBS, 201, json={"name": "once", "schedule_type": "once", "run_at": at.isoformat()}
    )
    assert datetime.fromisoformat(once["next_run_at"]) == at

    viewer = make_user("viewer")
    listed = api.client.get("/api/v1" + JOBS, headers=viewer.headers).json()
    assert listed["total"] == 6 and [j["name"] for j in listed["items"]][:2] == ["cron", "hourly"]
    assert api.call("GET", JOBS, params={"job_type": "reachability"})["total"] == 1
    assert api.client.post("/api/v1" + JOBS, json={}, headers=viewer.headers).status_code == 403

    # A change applies at once: the next run is recomputed.
    moved = api.call("PATCH", f"{JOBS}/{daily['id']}", json={"time_of_day": "23:45"})
    local = _local(moved["next_run_at"], "Asia/Tokyo")
    assert (local.hour, local.minute) == (23, 45) and moved["tags"] == ["core"]
    switched = api.call(
        "PATCH",
        f"{JOBS}/{daily['id']}",
        json={"schedule_type": "interval", "interval_seconds": 120},
    )
    assert switched["time_of_day"] is None and switched["interval_seconds"] == 120
    off = api.call("POST", f"{JOBS}/{daily['id']}/disable")
    assert off["enabled"] is False and off["next_run_at"] is None
    on = api.call("POST", f"{JOBS}/{daily['id']}/enable")
    assert on["enabled"] is True and on["next_run_at"] is not None
    api.call("DELETE", f"{JOBS}/{daily['id']}", 204)
    api.call("GET", f"{JOBS}/{daily['id']}", 404)
    api.call(
        "POST",
        JOBS,
        409,
        json={"name": "WEEKLY", "schedule_type": "interval", "interval_seconds": 60},
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"schedule_type": "cron", "cron_expression": "61 * * * *"}, "cron_expression"),
        ({"schedule_type": "cron", "cron_expression": "every day at noon"}, "cron_expression"),
        ({"schedule_type": "cron", "cron_expression": "0 0 * * * *"}, "cron_expression"),
        ({"schedule_type": "cron", "cron_expression": "0 0 30 2 *"}, "schedule_type"),
        ({"schedule_type": "cron"}, "cron_expression"),
        ({"schedule_type": "daily"}, "time_of_day"),
        ({"schedule_type": "daily", "time_of_day": "25:00"}, "body.time_of_day"),
        ({"schedule_type": "weekly", "time_of_day": "10:00"}, "day_of_week"),
        (
            {"schedule_type": "monthly", "time_of_day": "10:00", "day_of_month": 32},
            "body.day_of_month",
        ),
        ({"schedule_type": "interval", "interval_seconds": 10}, "body.interval_seconds"),
        ({"schedule_type": "once", "run_at": "2030-01-01T09:00:00"}, "body.run_at"),
        ({"schedule_type": "once", "run_at": "2001-01-01T09:00:00+00:00"}, "run_at"),
        ({"schedule_type": "hourly"}, "body.schedule_type"),
        ({"schedule_type": "interval", "interval_seconds": 60, "target_type": "tags"}, "tags"),
        (
            {
                "schedule_type": "interval",
                "interval_seconds": 60,
                "target_type": "tags",
                "tags": ["nope"],
            },
            "tags",
        ),
        (
            {"schedule_type": "interval", "interval_seconds": 60, "target_type": "device"},
            "device_id",
        ),
        (
            {
                "schedule_type": "interval",
                "interval_seconds": 60,
                "target_type": "device",
                "device_id": 999999,
            },
            "device_id",
        ),
    ],
)
def test_bad_schedules_are_a_422_naming_the_field(db, api, body, field):
    error = api.call("POST", JOBS, 422, json={"name": "bad", **body})["error"]
    fields = [e["field"] for e in error["details"].get("errors", [])] or [
        error["details"].get("field")
    ]
    assert any(f == field or f.startswith(field) for f in fields), error


def _scheduled_runs(db):
    """Runs fired for scheduled jobs (the scheduler also fires the periodic system tasks)."""
    with db.scope(write=False) as s:
        stmt = select(JobLog).where(JobLog.scheduled_job_id.is_not(None)).order_by(JobLog.id)
        return list(s.scalars(stmt))


def _make_due(db, job_id, when):
    with db.scope() as s:
        s.execute(update(ScheduledJob).where(ScheduledJob.id == job_id).values(next_run_at=when))


def test_due_jobs_fire_once_through_the_scheduler_and_changes_apply_at_once(db, api, make_farm):
    farm = make_farm(1)
    (device_id,) = add_devices(db, farm, tags=("core",))
    add_credential(db, "admin", tags={"core": 1})
    body = {
        "schedule_type": "interval",
        "interval_seconds": 600,
        "target_type": "tags",
        "tags": ["core"],
    }
    job = api.call("POST", JOBS, 201, json={"name": "ten-minutes", **body})
    other = api.call("POST", JOBS, 201, json={"name": "later", **body})
    off = api.call("POST", JOBS, 201, json={"name": "off", **body, "enabled": False})
    now = utcnow()
    _make_due(db, job["id"], now - timedelta(seconds=5))
    _make_due(db, other["id"], now - timedelta(seconds=5))
    _make_due(db, off["id"], now - timedelta(seconds=5))

    # "later" is moved before the scheduler looks: the change applies at once.
    api.call("PATCH", f"{JOBS}/{other['id']}", json={"interval_seconds": 3600})
    scheduler = Scheduler(db, tick=1.0)
    assert scheduler.tick(now) is True
    assert scheduler.tick(now) is True  # the same due time never fires twice
    (fired,) = _scheduled_runs(db)
    assert fired.scheduled_job_id == job["id"] and fired.params["automatic"] is True
    after = api.call("GET", f"{JOBS}/{job['id']}")
    assert after["last_run_at"] is not None
    assert datetime.fromisoformat(after["next_run_at"]) == now + timedelta(seconds=600)

    assert run_job(db, fired.id) == "succeeded"
    with db.scope(write=False) as s:
        version = s.scalar(select(ConfigBackup).where(ConfigBackup.device_id == device_id))
    assert version.is_automatic and version.job_log_id == fired.id

    # A deleted job never fires again, even when it was due.
    _make_due(db, job["id"], now - timedelta(seconds=1))
    api.call("DELETE", f"{JOBS}/{job['id']}", 204)
    with db.scope() as s:
        assert service.fire_due(s, now=utcnow()) == []
        assert s.scalar(select(func.count()).where(JobLog.job_type == "backups.run")) == 1


def test_run_now_for_backup_and_reachability_jobs(db, api, make_farm):
    farm = make_farm(1)
    (device_id,) = add_devices(db, farm, tags=("core",))
    add_credential(db, "admin", tags={"core": 1})
    backup = api.call(
        "POST",
        JOBS,
        201,
        json={
            "name": "b",
            "schedule_type": "daily",
            "time_of_day": "03:00",
            "target_type": "device",
            "device_id": device_id,
            "enabled": False,
        },
    )
    run = api.call("POST", f"{JOBS}/{backup['id']}/run", 202)
    assert run["scheduled_job_id"] == backup["id"] and run["job_type"] == "backups.run"
    assert run["device_id"] == device_id and run["params"]["automatic"] is False
    assert run_job(db, run["id"]) == "succeeded"
    assert api.call("GET", f"/devices/{device_id}/backups")["total"] == 1
    assert api.call("GET", f"{JOBS}/{backup['id']}")["next_run_at"] is None  # still disabled

    probe = api.call(
        "POST",
        JOBS,
        201,
        json={
            "name": "p",
            "schedule_type": "interval",
            "interval_seconds": 300,
            "job_type": "reachability",
            "target_type": "tags",
            "tags": ["core"],
        },
    )
    run = api.call("POST", f"{JOBS}/{probe['id']}/run", 202)
    assert run["job_type"] == "inventory.health" and run["params"] == {"device_ids": [device_id]}
    assert run_job(db, run["id"]) == "succeeded"
    api.call("POST", f"{JOBS}/999999/run", 404)
