"""The jobs pages: runs with filters, one run with its live progress and log, scheduled jobs."""

from __future__ import annotations

from sqlalchemy import select

from labkeeper.backups import service as backups
from labkeeper.core.audit import SYSTEM
from labkeeper.jobs.models import JobLog, ScheduledJob
from tests.backups.conftest import add_devices, backup_now
from tests.web.conftest import HTML, counting, sign_in


def _as(client, make_user, role: str, username: str) -> str:
    make_user(role, username=username, password="jobs-pages-pass-1")
    return sign_in(client, username, "jobs-pages-pass-1")


def _queued(db, device_ids) -> int:
    with db.scope() as s:
        return backups.start_backup(s, actor=SYSTEM, device_ids=device_ids).id


def test_runs_list_filters_and_a_finished_run_with_its_log(client, make_user, db):
    ids = add_devices(db, None, names=["nowhere-1", "nowhere-2"], ports=[None, None])
    finished = backup_now(db, device_ids=ids)  # no address: both fail, with log entries
    waiting = _queued(db, ids[:1])
    _as(client, make_user, "viewer", "vic")

    runs = client.get("/jobs", headers=HTML)
    assert runs.status_code == 200
    assert f'href="/jobs/{finished.id}"' in runs.text and f'href="/jobs/{waiting}"' in runs.text
    queued_only = client.get("/jobs?status=queued", headers=HTML).text
    assert f'href="/jobs/{waiting}"' in queued_only
    assert f'href="/jobs/{finished.id}"' not in queued_only
    assert "Backup" in client.get("/jobs?job_type=backups.run", headers=HTML).text
    none = client.get("/jobs?job_type=nothing.like.this", headers=HTML)
    assert none.status_code == 200 and "No run matches" in none.text

    run = client.get(f"/jobs/{finished.id}", headers=HTML)
    assert run.status_code == 200
    assert finished.status in run.text
    assert "nowhere-1" in run.text and "nowhere-2" in run.text  # entries name their device
    assert 'hx-trigger="every 1s"' not in run.text  # finished: no polling
    errors_only = client.get(f"/jobs/{finished.id}?level=error", headers=HTML).text
    debug_only = client.get(f"/jobs/{finished.id}?level=debug", headers=HTML).text
    assert "nowhere-1" in errors_only
    assert "No entries at this level" in debug_only


def test_a_running_run_polls_and_stops_once_finished(client, make_user, db):
    ids = add_devices(db, None, names=["later"], ports=[None])
    run_id = _queued(db, ids)
    _as(client, make_user, "viewer", "val")
    page = client.get(f"/jobs/{run_id}", headers=HTML)
    assert f'hx-get="/jobs/{run_id}/live"' in page.text and 'hx-trigger="every 1s"' in page.text
    live = client.get(f"/jobs/{run_id}/live", headers=HTML)
    assert live.status_code == 200 and "<html" not in live.text
    assert 'hx-trigger="every 1s"' in live.text and 'data-status="queued"' in live.text
    from labkeeper.jobs.engine import run_job

    run_job(db, run_id)
    done = client.get(f"/jobs/{run_id}/live", headers=HTML).text
    assert 'hx-trigger="every 1s"' not in done and 'data-status="queued"' not in done


def test_scheduled_jobs_create_edit_toggle_run_delete(client, make_user, db):
    add_devices(db, None, names=["core-1"], ports=[None])
    csrf = _as(client, make_user, "admin", "ada")
    empty = client.get("/jobs/scheduled", headers=HTML)
    assert empty.status_code == 200 and "Nothing is scheduled" in empty.text

    bad = client.post(
        "/jobs/scheduled",
        data={"csrf_token": csrf, "name": "x", "schedule_type": "interval", "enabled": "on"},
        headers=HTML,
    )
    assert bad.status_code == 422 and "interval_seconds" not in bad.text.split("<main")[0]
    assert "needs interval_seconds" in bad.text or "required" in bad.text.lower()
    no_device = client.post(
        "/jobs/scheduled",
        data={
            "csrf_token": csrf,
            "name": "one",
            "target_type": "device",
            "device": "ghost",
            "schedule_type": "daily",
            "time_of_day": "02:00",
        },
        headers=HTML,
    )
    assert no_device.status_code == 422 and "There is no device with this name" in no_device.text
    bad_cron = client.post(
        "/jobs/scheduled",
        data={"csrf_token": csrf, "name": "c", "schedule_type": "cron", "cron_expression": "x y"},
        headers=HTML,
    )
    assert bad_cron.status_code == 422 and "is not a cron expression" in bad_cron.text

    ok = client.post(
        "/jobs/scheduled",
        data={
            "csrf_token": csrf,
            "name": "nightly core",
            "target_type": "device",
            "device": "core-1",
            "schedule_type": "daily",
            "time_of_day": "02:00",
            "enabled": "on",
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert ok.status_code == 303
    with db.scope(write=False) as s:
        job = s.scalar(select(ScheduledJob).where(ScheduledJob.name == "nightly core"))
        assert job is not None and job.next_run_at is not None and job.time_of_day == "02:00"
        job_id = job.id
    listed = client.get("/jobs/scheduled", headers=HTML).text
    assert "nightly core" in listed and "daily at 02:00" in listed

    edit = client.post(
        f"/jobs/scheduled/{job_id}",
        data={
            "csrf_token": csrf,
            "name": "nightly core",
            "target_type": "all",
            "schedule_type": "interval",
            "interval_minutes": "30",
            "enabled": "on",
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert edit.status_code == 303
    assert "every 30 min" in client.get(f"/jobs/scheduled/{job_id}", headers=HTML).text

    for action in ("disable", "enable"):
        r = client.post(
            f"/jobs/scheduled/{job_id}/{action}",
            data={"csrf_token": csrf},
            headers=HTML,
            follow_redirects=False,
        )
        assert r.status_code == 303
    run = client.post(
        f"/jobs/scheduled/{job_id}/run",
        data={"csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert run.status_code == 303 and run.headers["location"].startswith("/jobs/")
    with db.scope(write=False) as s:
        assert s.scalar(select(JobLog.scheduled_job_id).order_by(JobLog.id.desc())) == job_id
    gone = client.post(
        f"/jobs/scheduled/{job_id}/delete",
        data={"csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert gone.status_code == 303
    assert client.get(f"/jobs/scheduled/{job_id}", headers=HTML).status_code == 404


def test_viewers_read_but_cannot_change(client, make_user, db):
    with db.scope() as s:
        from labkeeper.backups.schemas import ScheduledJobCreate

        job = backups.create_scheduled_job(
            s,
            data=ScheduledJobCreate(
                name="weekly", schedule_type="weekly", time_of_day="03:00", day_of_week=6
            ),
            actor=SYSTEM,
        )
        job_id = job.id
    csrf = _as(client, make_user, "viewer", "vee")
    page = client.get("/jobs/scheduled", headers=HTML)
    assert page.status_code == 200 and "Sundays at 03:00" in page.text
    assert "Schedule a job" not in page.text and "Run now" not in page.text
    for action in ("run", "disable", "delete"):
        r = client.post(
            f"/jobs/scheduled/{job_id}/{action}", data={"csrf_token": csrf}, headers=HTML
        )
        assert r.status_code == 403
    assert (
        client.post("/jobs/scheduled", data={"csrf_token": csrf}, headers=HTML).status_code == 403
    )


def test_bad_input_gets_4xx_pages(client, make_user):
    _as(client, make_user, "admin", "abe")
    for url in (
        "/jobs/abc",
        "/jobs/999999",
        "/jobs?status=bogus",
        "/jobs/1/live?level=loud",
        "/jobs/scheduled/999999",
        "/jobs/scheduled?enabled=maybe",
    ):
        r = client.get(url, headers=HTML)
        assert 400 <= r.status_code < 500, url


def test_query_count_does_not_grow_with_the_runs(client, make_user, db):
    _as(client, make_user, "viewer", "vin")
    ids = add_devices(db, None, names=["q1"], ports=[None])

    def queries() -> int:
        with counting(db) as seen:
            assert client.get("/jobs", headers=HTML).status_code == 200
        return len(seen)

    _queued(db, ids)
    few = queries()
    for _ in range(20):
        _queued(db, ids)
    assert queries() == few
