"""Notifications: booking events reach Discord (with mentions) and email as jobs queued after
commit; a failing webhook never fails the booking and is retried."""

from __future__ import annotations

import socket

from sqlalchemy import select, update

from labkeeper.auth.models import User
from labkeeper.booking.models import Booking
from labkeeper.jobs.engine import run_job
from labkeeper.jobs.models import JobLog, JobLogEntry
from tests.booking.conftest import API, iso, item, set_setting

DELIVER = "notify.deliver"


def _queued(db) -> list[JobLog]:
    with db.scope(write=False) as s:
        return list(
            s.scalars(
                select(JobLog)
                .where(JobLog.job_type == DELIVER, JobLog.status == "queued")
                .order_by(JobLog.id)
            )
        )


def _run_queued(db) -> list[JobLog]:
    """Run every queued delivery here and now; their final rows."""
    runs = _queued(db)
    for run in runs:
        run_job(db, run.id)
    with db.scope(write=False) as s:
        return [s.get(JobLog, r.id) for r in runs]


def _discord_id(db, account, value: str) -> None:
    with db.scope() as s:
        s.execute(update(User).where(User.id == account.id).values(discord_id=value))


def _configure(db, webhook, sink=None) -> None:
    set_setting(db, "notifications.discord_booking_webhook", f"{webhook.url}/booking")
    set_setting(db, "notifications.discord_admin_webhook", f"{webhook.url}/admin")
    set_setting(db, "notifications.retry_backoff_seconds", 0.01)
    if sink is not None:
        set_setting(db, "notifications.smtp_host", "127.0.0.1")
        set_setting(db, "notifications.smtp_port", sink.port)
        set_setting(db, "notifications.smtp_from", "lab@lab.example")
        set_setting(db, "notifications.smtp_starttls", False)


def test_booking_events_reach_discord_and_email(
    client, db, lab, make_user, book, webhook, smtp_sink
):
    _configure(db, webhook, smtp_sink)
    set_setting(db, "approval.mode", "always")
    owner, friend, approver = make_user("member"), make_user("member"), make_user("approver")
    _discord_id(db, owner, "111111111")
    _discord_id(db, friend, "222222222")
    made = book(owner, item(lab.devices[0], 0, 2), collaborators=[friend.username])
    assert {r.params["channel"] for r in _queued(db)} == {
        "discord_booking",
        "discord_admin",
        "email",
    }
    assert all("url" not in r.params and "webhook" not in str(r.params) for r in _queued(db))
    assert {r.status for r in _run_queued(db)} == {"succeeded"}

    (posted,) = webhook.bodies("/booking")
    assert "r0" in posted["content"] and "waits for an approver" in posted["content"]
    # The owner made the request; only the collaborator is pinged about it.
    assert posted["content"].startswith("<@222222222> ")
    assert posted["allowed_mentions"] == {"parse": [], "users": ["222222222"]}
    (admin_post,) = webhook.bodies("/admin")
    assert made["grouped_booking_id"] in admin_post["content"]
    (mail,) = smtp_sink.mails
    assert sorted(mail["to"]) == sorted(
        [f"{owner.username}@lab.example", f"{friend.username}@lab.example"]
    )
    assert "Subject: [labkeeper] Booking requested: r0" in mail["data"]

    r = client.post(
        f"{API}/bookings/approve",
        json={"grouped_booking_ids": [made["grouped_booking_id"]]},
        headers=approver.headers,
    )
    assert r.status_code == 200, r.text
    _run_queued(db)
    approved = webhook.bodies("/booking")[-1]
    assert approved["content"].startswith("<@111111111> <@222222222> ")
    assert f"{approver.username} approved {owner.username}'s booking of r0" in approved["content"]
    assert "Booking approved" in smtp_sink.mails[-1]["data"]

    # A refused request queues nothing: deliveries are queued in the request's transaction.
    before = len(_queued(db))
    book(owner, item(lab.devices[0], 1, 3), expect=409)
    assert len(_queued(db)) == before


def test_a_failing_webhook_never_fails_the_booking_and_is_retried(
    client, db, lab, make_user, book, webhook
):
    _configure(db, webhook)
    set_setting(db, "notifications.discord_admin_webhook", None)
    set_setting(db, "notifications.retry_attempts", 3)
    alice = make_user("member")

    # Two server errors, then it works: delivered on the third attempt.
    webhook.answers[:] = [500, 502]
    made = book(alice, item(lab.devices[0], 0, 1))
    (run,) = _run_queued(db)
    assert run.status == "succeeded" and run.result["attempts"] == 3
    assert len(webhook.bodies("/booking")) == 3
    with db.scope(write=False) as s:
        levels = list(s.scalars(select(JobLogEntry.level).where(JobLogEntry.job_log_id == run.id)))
    assert levels.count("warning") == 2

    # Nobody listening at all: the booking stands, the delivery gives up after 3 attempts.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    set_setting(db, "notifications.discord_booking_webhook", f"http://127.0.0.1:{dead}/hook")
    made = book(alice, item(lab.devices[1], 0, 1))
    (run,) = _run_queued(db)
    assert run.status == "failed" and run.result["attempts"] == 3
    assert "could not be reached" in run.message
    with db.scope(write=False) as s:
        row = s.get(Booking, made["bookings"][0]["booking_id"])
        assert row is not None and row.status == "CONFIRMED"

    # A webhook that refuses the message (404: deleted in Discord) is not hammered.
    set_setting(db, "notifications.discord_booking_webhook", f"{webhook.url}/booking")
    webhook.answers[:] = [404]
    sent = len(webhook.posts)
    book(alice, item(lab.devices[2], 0, 1))
    (run,) = _run_queued(db)
    assert run.status == "failed" and run.result["attempts"] == 1
    assert len(webhook.posts) == sent + 1


def test_maintenance_clash_and_the_test_endpoint(client, db, lab, make_user, book, admin, webhook):
    _configure(db, webhook)
    alice = make_user("member")
    _discord_id(db, alice, "333333333")
    book(alice, item(lab.devices[0], 0, 2))
    _run_queued(db)
    r = client.post(
        f"{API}/maintenance",
        json={"device_ids": [lab.devices[0]], "start": iso(1), "end": iso(3), "reason": "optics"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    _run_queued(db)
    clash = webhook.bodies("/booking")[-1]["content"]
    assert clash.startswith("<@333333333> ") and "Maintenance of r0" in clash
    assert "Reason: optics" in clash
    assert "Maintenance of r0" in webhook.bodies("/admin")[-1]["content"]

    r = client.post(
        f"{API}/notifications/test", json={"channel": "discord_admin"}, headers=admin.headers
    )
    assert r.status_code == 202, r.text
    run_job(db, r.json()["job_log_id"])
    assert "Test notification" in webhook.bodies("/admin")[-1]["content"]
    denied = client.post(
        f"{API}/notifications/test", json={"channel": "email"}, headers=alice.headers
    )
    assert denied.status_code == 403
