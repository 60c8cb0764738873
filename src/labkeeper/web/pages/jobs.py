"""Job runs with their live progress and log, and the scheduled jobs that start them.

A running run's page polls `/jobs/{id}/live` (htmx, every second) for its counters and log; the
fragment of a finished run carries no trigger, so the polling stops by itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from labkeeper.auth.deps import Principal, require
from labkeeper.backups import repository as backups_repository
from labkeeper.backups import service as backups
from labkeeper.backups.schemas import ScheduledJobCreate, ScheduledJobUpdate
from labkeeper.core.errors import AppError
from labkeeper.core.pagination import PageParams, fetch_page
from labkeeper.core.routing import APIRouter
from labkeeper.core.schemas import Id
from labkeeper.jobs import repository, service
from labkeeper.jobs.context import LEVELS
from labkeeper.web.deps import DB, Filter, Form, Paging, refused
from labkeeper.web.render import (
    error_fields,
    lab_timezone,
    page,
    query_string,
    redirect,
    sentence,
    templates,
    text,
    validation_errors,
)

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("jobs:read"))]
Writer = Annotated[Principal, Depends(require("jobs:write"))]
Level = Literal["debug", "info", "warning", "error"] | None
Status = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"] | None

TASK_LABELS = {"backups.run": "Backup", "inventory.health": "Reachability check"}
STATUS_BADGES = {
    "queued": "badge-info",
    "running": "badge-primary",
    "succeeded": "badge-success",
    "partial": "badge-warning",
    "failed": "badge-danger",
    "cancelled": "",
}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SCHEDULE_TYPES = (
    ("interval", "Every few minutes or hours"),
    ("daily", "Daily"),
    ("weekly", "Weekly"),
    ("monthly", "Monthly"),
    ("cron", "Cron expression"),
    ("once", "Once"),
)
TARGET_TYPES = (("all", "Every device"), ("device", "One device"), ("tags", "Devices with tags"))
JOB_TYPES = (("backup", "Backup"), ("reachability", "Reachability check"))
FORM_FIELDS = (
    "name",
    "job_type",
    "target_type",
    "device",
    "tags",
    "schedule_type",
    "interval_minutes",
    "cron_expression",
    "run_at",
    "time_of_day",
    "day_of_week",
    "day_of_month",
)


def task_label(name: str) -> str:
    """A task's name for people."""
    return TASK_LABELS.get(name, name)


templates.env.filters["task_label"] = task_label


# -- runs ------------------------------------------------------------------------------------


@router.get("/jobs")
def runs_page(
    request: Request,
    session: DB,
    principal: Reader,
    paging: Paging,
    job_type: Filter = None,
    status: Status = None,
) -> Response:
    """Job runs, newest first, by task and status."""
    rows, total = fetch_page(
        session, repository.runs_query(status=status, job_type=job_type or None), paging
    )
    filters = {"job_type": job_type or "", "status": status or ""}
    return page(
        request,
        session,
        principal,
        "jobs/runs.html",
        runs=rows,
        total=total,
        paging=paging,
        filters=filters,
        job_types=[(t, task_label(t)) for t in repository.job_types(session)],
        statuses=repository.STATUSES,
        badges=STATUS_BADGES,
    )


def _live(session: DB, job_log_id: int, level: str | None, paging: PageParams) -> dict[str, Any]:
    run = service.get_run(session, job_log_id)
    entries, entry_total = fetch_page(
        session, repository.entries_query(job_log_id, level=level), paging, scalars=False
    )
    finished = run.status in repository.FINISHED
    percent = int(100 * run.done / run.total) if run.total else (100 if finished else 0)
    return {
        "run": run,
        "entries": entries,
        "entry_total": entry_total,
        "finished": finished,
        "percent": percent,
        "level": level or "",
        "paging": paging,
        "filters": {"level": level or ""},
        "badges": STATUS_BADGES,
        "levels": LEVELS,
        "counts": repository.entry_counts(session, job_log_id),
        "live_url": f"/jobs/{job_log_id}/live"
        + query_string({"level": level, "offset": paging.offset or None}),
    }


@router.get("/jobs/scheduled")
def scheduled_page(
    request: Request,
    session: DB,
    principal: Reader,
    paging: Paging,
    q: Filter = None,
    enabled: Literal["yes", "no"] | None = None,
) -> Response:
    """Scheduled jobs: what runs when, on which devices."""
    return _scheduled(request, session, principal, paging=paging, q=q, enabled=enabled)


def _scheduled(
    request: Request,
    session: DB,
    principal: Principal,
    *,
    paging: PageParams,
    q: str | None = None,
    enabled: str | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    rows, total = fetch_page(
        session,
        backups_repository.scheduled_jobs_query(
            q=q, enabled=None if enabled is None else enabled == "yes"
        ),
        paging,
        scalars=False,
    )
    context.setdefault(
        "values", {"enabled": "on", "schedule_type": "daily", "time_of_day": "02:00"}
    )
    return page(
        request,
        session,
        principal,
        "jobs/scheduled.html",
        status=status,
        jobs=backups.scheduled_job_views(session, rows),
        total=total,
        paging=paging,
        filters={"q": q or "", "enabled": enabled or ""},
        **_form_choices(),
        **context,
    )


def _form_choices() -> dict[str, Any]:
    return {
        "schedule_types": SCHEDULE_TYPES,
        "target_types": TARGET_TYPES,
        "job_types": JOB_TYPES,
        "weekdays": list(enumerate(WEEKDAYS)),
        "describe": describe,
    }


def describe(job: dict[str, Any]) -> str:
    """A schedule in words: 'daily at 02:00', 'every 30 min', 'cron 0 2 * * *'."""
    kind = job["schedule_type"]
    if kind == "interval" and job["interval_seconds"]:
        minutes = job["interval_seconds"] // 60
        return f"every {minutes // 60} h" if minutes % 60 == 0 else f"every {minutes} min"
    if kind == "daily":
        return f"daily at {job['time_of_day']}"
    if kind == "weekly" and job["day_of_week"] is not None:
        return f"{WEEKDAYS[job['day_of_week']]}s at {job['time_of_day']}"
    if kind == "monthly":
        return f"monthly on day {job['day_of_month']} at {job['time_of_day']}"
    if kind == "cron":
        return f"cron {job['cron_expression']}"
    if kind == "once" and job["run_at"] is not None:
        return "once"
    return kind


def _values(form: FormData) -> dict[str, str]:
    values = {k: text(form, k, limit=500) for k in FORM_FIELDS}
    values["enabled"] = "on" if form.get("enabled") else ""
    return values


def _body(session: DB, values: dict[str, str], tz: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body a form stands for, or field errors."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "name": values["name"],
        "job_type": values["job_type"] or "backup",
        "target_type": values["target_type"] or "all",
        "schedule_type": values["schedule_type"],
        "enabled": values["enabled"] == "on",
        "tags": [t.strip() for t in values["tags"].split(",") if t.strip()],
    }
    if body["target_type"] == "device":
        found = (
            backups_repository.device_by_name(session, values["device"])
            if values["device"]
            else None
        )
        if found is None:
            errors["device"] = (
                "There is no device with this name" if values["device"] else "Name a device"
            )
        else:
            body["device_id"] = found.id
    kind = values["schedule_type"]
    if kind == "interval" and values["interval_minutes"]:
        try:
            body["interval_seconds"] = int(float(values["interval_minutes"]) * 60)
        except ValueError:
            errors["interval_minutes"] = "Give a number of minutes"
    if kind == "cron" and values["cron_expression"]:
        body["cron_expression"] = values["cron_expression"]
    if kind in ("daily", "weekly", "monthly") and values["time_of_day"]:
        body["time_of_day"] = values["time_of_day"][:5]
    if kind == "weekly" and values["day_of_week"]:
        body["day_of_week"] = values["day_of_week"]
    if kind == "monthly" and values["day_of_month"]:
        body["day_of_month"] = values["day_of_month"]
    if kind == "once" and values["run_at"]:
        try:
            local = datetime.fromisoformat(values["run_at"])
        except ValueError:
            errors["run_at"] = "Give a date and time"
        else:
            body["run_at"] = (
                local if local.tzinfo else local.replace(tzinfo=backups.lab_timezone(session))
            )
    return body, errors


def _field_errors(exc: ValidationError) -> dict[str, str]:
    errors = validation_errors(exc)
    if "interval_seconds" in errors:
        errors["interval_minutes"] = "Give at least 1 minute (and at most a year)"
    if "device_id" in errors:
        errors["device"] = errors.pop("device_id")
    return errors


def _domain_errors(exc: AppError) -> dict[str, str]:
    errors = error_fields(exc, {*FORM_FIELDS, "interval_seconds", "device_id"})
    if "interval_seconds" in errors:
        errors["interval_minutes"] = errors.pop("interval_seconds")
    if "device_id" in errors:
        errors["device"] = errors.pop("device_id")
    return errors


@router.post("/jobs/scheduled")
def scheduled_create(request: Request, session: DB, form: Form, principal: Writer) -> Response:
    """Create a scheduled job."""
    values = _values(form)
    body, errors = _body(session, values, lab_timezone(session))
    if not errors:
        try:
            data = ScheduledJobCreate.model_validate(body)
        except ValidationError as exc:
            errors = _field_errors(exc)
    if not errors:
        try:
            job = backups.create_scheduled_job(session, data=data, actor=principal)
        except AppError as exc:
            refused(request, session, principal, exc)
            errors = _domain_errors(exc)
        else:
            return redirect("/jobs/scheduled", f"The scheduled job “{job.name}” is saved.")
    return _scheduled(
        request,
        session,
        principal,
        paging=PageParams(),
        status=422,
        values=values,
        errors=errors,
        open_create=True,
    )


def _form_values(job: dict[str, Any], tz: str) -> dict[str, str]:
    run_at = job["run_at"]
    return {
        "name": job["name"],
        "job_type": job["job_type"],
        "target_type": job["target_type"],
        "device": job["device_name"] or "",
        "tags": ", ".join(job["tags"]),
        "schedule_type": job["schedule_type"],
        "interval_minutes": str(job["interval_seconds"] // 60) if job["interval_seconds"] else "",
        "cron_expression": job["cron_expression"] or "",
        "run_at": run_at.astimezone(backups.ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")
        if run_at
        else "",
        "time_of_day": job["time_of_day"] or "",
        "day_of_week": "" if job["day_of_week"] is None else str(job["day_of_week"]),
        "day_of_month": "" if job["day_of_month"] is None else str(job["day_of_month"]),
        "enabled": "on" if job["enabled"] else "",
    }


def _edit(
    request: Request,
    session: DB,
    principal: Principal,
    job: dict[str, Any],
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    rows, total = fetch_page(
        session,
        repository.runs_query(scheduled_job_id=job["id"]),
        PageParams(limit=10, offset=0),
    )
    return page(
        request,
        session,
        principal,
        "jobs/scheduled_edit.html",
        status=status,
        job=job,
        values=values or _form_values(job, lab_timezone(session)),
        errors=errors or {},
        runs=rows,
        run_total=total,
        badges=STATUS_BADGES,
        **_form_choices(),
    )


@router.get("/jobs/scheduled/{job_id}")
def scheduled_detail(request: Request, job_id: Id, session: DB, principal: Reader) -> Response:
    """One scheduled job: its settings (to change) and its latest runs."""
    return _edit(request, session, principal, backups.scheduled_job_detail(session, job_id))


@router.post("/jobs/scheduled/{job_id}")
def scheduled_update(
    request: Request, job_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Change a scheduled job; the new schedule applies at once."""
    current = backups.scheduled_job_detail(session, job_id)
    values = _values(form)
    body, errors = _body(session, values, lab_timezone(session))
    if "run_at" in body and current["run_at"] is not None and body["run_at"] == current["run_at"]:
        body.pop("run_at")  # unchanged: a once job that ran keeps its time without complaint
    if not errors:
        try:
            data = ScheduledJobUpdate.model_validate(body)
        except ValidationError as exc:
            errors = _field_errors(exc)
    if not errors:
        try:
            backups.update_scheduled_job(session, job_id=job_id, data=data, actor=principal)
        except AppError as exc:
            refused(request, session, principal, exc)
            errors = _domain_errors(exc)
        else:
            return redirect(f"/jobs/scheduled/{job_id}", "The scheduled job is saved.")
    return _edit(request, session, principal, current, status=422, values=values, errors=errors)


def _job_action(
    request: Request, session: DB, principal: Principal, job_id: int, action: str
) -> Response:
    try:
        if action == "run":
            run = backups.run_scheduled_job_now(session, job_id=job_id, actor=principal)
            return redirect(f"/jobs/{run.id}", "The job is queued; this page follows it.")
        if action == "delete":
            backups.delete_scheduled_job(session, job_id=job_id, actor=principal)
            return redirect("/jobs/scheduled", "The scheduled job is deleted.")
        job = backups.set_enabled(
            session, job_id=job_id, enabled=action == "enable", actor=principal
        )
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect("/jobs/scheduled", sentence(exc.message), "error")
    word = "enabled" if job.enabled else "disabled; it keeps its settings"
    return redirect("/jobs/scheduled", f"“{job.name}” is {word}.")


@router.post("/jobs/scheduled/{job_id}/enable")
def scheduled_enable(
    request: Request, job_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Enable a scheduled job."""
    return _job_action(request, session, principal, job_id, "enable")


@router.post("/jobs/scheduled/{job_id}/disable")
def scheduled_disable(
    request: Request, job_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Disable a scheduled job."""
    return _job_action(request, session, principal, job_id, "disable")


@router.post("/jobs/scheduled/{job_id}/run")
def scheduled_run(
    request: Request, job_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Run a scheduled job now and follow it."""
    return _job_action(request, session, principal, job_id, "run")


@router.post("/jobs/scheduled/{job_id}/delete")
def scheduled_delete(
    request: Request, job_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Delete a scheduled job (its past runs stay)."""
    return _job_action(request, session, principal, job_id, "delete")


# -- one run ---------------------------------------------------------------------------------


@router.get("/jobs/{job_log_id}")
def run_page(
    request: Request,
    job_log_id: Id,
    session: DB,
    principal: Reader,
    paging: Paging,
    level: Level = None,
) -> Response:
    """One run: progress (live while it runs) and its log, filtered by level."""
    live = _live(session, job_log_id, level, paging)
    return page(request, session, principal, "jobs/run.html", **live)


@router.get("/jobs/{job_log_id}/live")
def run_live(
    request: Request,
    job_log_id: Id,
    session: DB,
    principal: Reader,
    paging: Paging,
    level: Level = None,
) -> Response:
    """The live part of a run's page (htmx polls it while the run is going)."""
    live = _live(session, job_log_id, level, paging)
    return page(request, session, principal, "jobs/_live.html", **live)


@router.post("/jobs/{job_log_id}/cancel")
def run_cancel(
    request: Request, job_log_id: Id, session: DB, form: Form, principal: Writer
) -> Response:
    """Cancel a queued run, or ask a running one to stop."""
    try:
        service.cancel(session, job_log_id=job_log_id, actor=principal)
    except AppError as exc:
        refused(request, session, principal, exc)
        return redirect(f"/jobs/{job_log_id}", sentence(exc.message), "error")
    return redirect(f"/jobs/{job_log_id}", "Cancelling: the run stops at its next step.", "info")
