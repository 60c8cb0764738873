"""Delivering notifications, as background jobs: a failing webhook or mail server never fails
the change that caused the message. Each delivery is tried `notifications.retry_attempts`
times, waiting `notifications.retry_backoff_seconds` and doubling the wait after each failure
(a 429's Retry-After is honoured); every attempt is logged on the run."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from labkeeper.admin import service as settings
from labkeeper.auth.models import User
from labkeeper.jobs.context import TaskContext
from labkeeper.jobs.registry import task
from labkeeper.notify import discord, email
from labkeeper.notify.delivery import DeliveryError

# No single wait (backoff or Retry-After) is longer than this.
MAX_WAIT_SECONDS = 60.0
SEND_TIMEOUT_SECONDS = 10.0


def _config(ctx: TaskContext, channel: str, user_ids: list[int]) -> dict[str, Any]:
    with ctx.db.scope(write=False) as s:
        get = lambda key: settings.get(s, key)  # noqa: E731
        config: dict[str, Any] = {
            "attempts": int(get("notifications.retry_attempts")),
            "backoff": float(get("notifications.retry_backoff_seconds")),
        }
        if channel in ("discord_booking", "discord_admin"):
            key = "booking" if channel == "discord_booking" else "admin"
            config["url"] = get(f"notifications.discord_{key}_webhook")
        else:
            config.update(
                host=get("notifications.smtp_host"),
                port=int(get("notifications.smtp_port")),
                username=get("notifications.smtp_username"),
                password=get("notifications.smtp_password"),
                sender=get("notifications.smtp_from"),
                starttls=bool(get("notifications.smtp_starttls")),
            )
        users = (
            list(
                s.execute(
                    select(User.id, User.discord_id, User.email, User.is_active).where(
                        User.id.in_(user_ids)
                    )
                )
            )
            if user_ids
            else []
        )
        config["discord_ids"] = [u.discord_id for u in users if u.discord_id and u.is_active]
        config["emails"] = [u.email for u in users if u.email and u.is_active]
    return config


def _sender(
    config: dict[str, Any], channel: str, text: str, subject: str | None, mention: bool
) -> tuple[Any, str | None]:
    if channel in ("discord_booking", "discord_admin"):
        if not config.get("url"):
            return None, f"the {channel} webhook is not configured"
        ids = config["discord_ids"] if mention else []
        return (
            lambda: discord.post(
                config["url"], content=text, mention_ids=ids, timeout=SEND_TIMEOUT_SECONDS
            ),
            None,
        )
    if not config.get("host") or not config.get("sender"):
        return None, "SMTP is not configured"
    if not config["emails"]:
        return None, "none of the recipients has an email address"
    return (
        lambda: email.send(
            host=config["host"],
            port=config["port"],
            sender=config["sender"],
            to=config["emails"],
            subject=subject or "labkeeper",
            body=text,
            username=config["username"],
            password=config["password"],
            starttls=config["starttls"],
            timeout=SEND_TIMEOUT_SECONDS,
        ),
        None,
    )


@task("notify.deliver")
def deliver(
    ctx: TaskContext,
    *,
    channel: str,
    text: str,
    event: str = "",
    subject: str | None = None,
    user_ids: list[int] | None = None,
    mention: bool = True,
) -> dict[str, Any]:
    """Deliver one notification (Discord webhook or email), retrying with backoff."""
    config = _config(ctx, channel, list(user_ids or []))
    send, skipped = _sender(config, channel, text, subject, mention)
    ctx.progress(total=1)
    if send is None:
        ctx.log("info", f"not sent: {skipped}", category="delivery")
        ctx.progress(done=1, unchanged=1)
        return {"status": "succeeded", "message": f"skipped: {skipped}", "attempts": 0}
    attempts = max(1, int(config["attempts"]))
    wait = float(config["backoff"])
    last = ""
    attempt = 0
    for attempt in range(1, attempts + 1):
        try:
            send()
        except DeliveryError as exc:
            last = str(exc)
            final = not exc.retryable or attempt == attempts
            ctx.log(
                "error" if final else "warning",
                f"{channel} attempt {attempt}/{attempts} failed: {exc}",
                category="delivery",
                details={"event": event, "retryable": exc.retryable},
            )
            if final:
                break
            pause = exc.retry_after if exc.retry_after is not None else wait
            time.sleep(min(max(pause, 0.0), MAX_WAIT_SECONDS))
            wait *= 2
            if ctx.cancelled():
                last = "cancelled while waiting to retry"
                break
            continue
        ctx.log("info", f"{channel}: delivered on attempt {attempt}", category="delivery")
        ctx.progress(done=1, changed=1)
        return {"attempts": attempt, "channel": channel, "event": event}
    ctx.progress(done=1, failed=1)
    return {
        "status": "failed",
        "message": f"{channel}: gave up after {attempt} attempts: {last}",
        "attempts": attempt,
    }
