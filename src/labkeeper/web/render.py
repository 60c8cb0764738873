"""Templates, the shared page context, flash messages, redirects and form helpers of the UI."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from labkeeper.admin import service as settings
from labkeeper.auth.deps import Principal
from labkeeper.core.errors import AppError, BadRequest
from labkeeper.core.security import constant_eq, sign
from labkeeper.core.time import utcnow

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
VENDOR_DIR = STATIC_DIR / "vendor"

FLASH_COOKIE = "labkeeper_flash"
# Double-submit token of the forms shown before sign-in (sign-in, accept an invitation).
FORM_COOKIE = "labkeeper_form"

templates = Jinja2Templates(directory=TEMPLATES_DIR)


# -- formatting -------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def format_dt(value: datetime | None, tz: str = "UTC", fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC datetime shown in the lab's time zone."""
    if value is None:
        return ""
    return value.astimezone(_zone(tz)).strftime(fmt)


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """'3 min ago', 'in 2 h', 'yesterday'...: a rough distance in time."""
    if value is None:
        return ""
    delta = value - (now or utcnow())
    seconds = int(delta.total_seconds())
    ahead = seconds > 0
    seconds = abs(seconds)
    if seconds < 60:
        text = "just now" if not ahead else "in under a minute"
        return text
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            amount = seconds // size
            return f"in {amount} {unit}" if ahead else f"{amount} {unit} ago"
    return ""


def sentence(text: str) -> str:
    """A message as a sentence on a page: 'the device is busy' -> 'The device is busy'."""
    return text[:1].upper() + text[1:]


def humanize(key: str) -> str:
    """'lockout_minutes' -> 'Lockout minutes'."""
    return sentence(key.replace("_", " ").replace(".", " ").strip())


templates.env.filters["dt"] = format_dt
templates.env.filters["relative"] = relative
templates.env.filters["humanize"] = humanize
templates.env.filters["tojson_pretty"] = lambda v: json.dumps(
    v, indent=2, sort_keys=True, default=str
)


def vendor_available(name: str) -> bool:
    """Whether `make assets` has copied a front-end library into static/vendor/."""
    return (VENDOR_DIR / name).is_file()


# -- flash messages ---------------------------------------------------------------------------


def _pack(messages: list[dict[str, str]]) -> str:
    raw = base64.urlsafe_b64encode(json.dumps(messages).encode()).decode()
    return f"{raw}.{sign(raw)}"


def _unpack(value: str) -> list[dict[str, str]]:
    raw, _, signature = value.rpartition(".")
    if not raw or not constant_eq(signature, sign(raw)):
        return []
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError):
        return []
    if not isinstance(data, list):
        return []
    return [
        {"kind": str(m.get("kind", "info")), "text": str(m.get("text", ""))}
        for m in data
        if isinstance(m, dict)
    ][:5]


def flash(response: Response, text: str, kind: str = "success") -> Response:
    """Show a message on the next page this browser loads."""
    response.set_cookie(
        FLASH_COOKIE,
        _pack([{"kind": kind, "text": text}]),
        max_age=120,
        httponly=True,
        samesite="lax",
        path="/",
    )
    return response


def redirect(url: str, message: str | None = None, kind: str = "success") -> RedirectResponse:
    """A 303 to another page (post/redirect/get), with an optional flash message."""
    response = RedirectResponse(url, status_code=303)
    if message:
        flash(response, message, kind)
    return response


def safe_next(value: str | None) -> str:
    """A local path to return to after sign-in; anything else (another site) is the dashboard."""
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and len(value) <= 2000
        and not value.startswith(("/login", "/logout"))
    ):
        return value
    return "/"


# -- the page context -------------------------------------------------------------------------


@dataclass(frozen=True)
class NavItem:
    """One entry of the main navigation."""

    label: str
    href: str
    api: bool = False  # the page is not built yet: the entry opens the API docs
    match: str | None = None  # path prefix that marks the entry as the current page

    def current(self, path: str) -> bool:
        """Whether the page at `path` belongs to this entry."""
        if self.api:
            return False
        if self.match is None:
            return path == self.href
        return path == self.match or path.startswith(self.match + "/")


def nav_items(request: Request, principal: Principal | None) -> list[NavItem]:
    """The main navigation for a principal: pages they may open, then sections the API has."""
    if principal is None:
        return []
    items = [NavItem("Dashboard", "/")]
    for section in getattr(request.app.state, "web_sections", []):
        if section.permission is None or principal.can(section.permission):
            items.append(
                NavItem(
                    section.label,
                    section.href,
                    api=section.api,
                    match=None if section.api else section.href,
                )
            )
    admin = admin_tabs(principal, getattr(request.app.state, "web_pages", None))
    if admin:
        items.append(NavItem("Admin", admin[0].href, match="/admin"))
    return items


# permission, label, path: the admin pages, in the order of their tabs. Pages still to come are
# left out until their route exists.
ADMIN_TABS: tuple[tuple[str, str, str], ...] = (
    ("bookings:approve", "Approvals", "/admin/approvals"),
    ("bookings:approve", "Conflicts", "/admin/conflicts"),
    ("devices:write", "Devices", "/admin/devices"),
    ("devices:write", "Maintenance", "/admin/maintenance"),
    ("users:read", "Users", "/admin/users"),
    ("users:write", "Invitations", "/admin/invitations"),
    ("logs:read", "Audit log", "/admin/audit"),
    ("settings:write", "Settings", "/admin/settings"),
)


def admin_tabs(principal: Principal | None, pages: frozenset[str] | None = None) -> list[NavItem]:
    """The admin pages a principal may open (of those in `pages`, the page paths that exist)."""
    if principal is None:
        return []
    return [
        NavItem(label, path)
        for perm, label, path in ADMIN_TABS
        if principal.can(perm) and (pages is None or path in pages)
    ]


def lab_name(session: Session) -> str:
    """The lab's name from settings."""
    return str(settings.get(session, "general.lab_name"))


def lab_timezone(session: Session) -> str:
    """The lab's time zone name from settings."""
    return str(settings.get(session, "general.lab_timezone"))


def form_token(request: Request) -> str:
    """The double-submit token of the pre-sign-in forms (kept in a cookie)."""
    existing = request.cookies.get(FORM_COOKIE, "")
    if 20 <= len(existing) <= 100:
        return existing
    token: str = getattr(request.state, "new_form_token", "") or secrets.token_urlsafe(24)
    request.state.new_form_token = token
    return token


def page(
    request: Request,
    session: Session | None,
    principal: Principal | None,
    template: str,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page inside the base layout (`session` None: the database is out of reach)."""
    flashes = _unpack(request.cookies.get(FLASH_COOKIE, ""))
    tz = lab_timezone(session) if session is not None else "UTC"
    ctx: dict[str, Any] = {
        "principal": principal,
        "lab_name": lab_name(session) if session is not None else "labkeeper",
        "tz": tz,
        "now": utcnow(),
        "nav": nav_items(request, principal),
        "admin_tabs": admin_tabs(principal, getattr(request.app.state, "web_pages", None)),
        "path": request.url.path,
        "csrf_token": principal.csrf_token if principal and principal.csrf_token else "",
        "flashes": flashes,
        "has_htmx": vendor_available("htmx.min.js"),
        "errors": {},
        "values": {},
        **context,
    }
    response = templates.TemplateResponse(request, template, ctx, status_code=status)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    new_token = getattr(request.state, "new_form_token", None)
    if new_token:
        response.set_cookie(
            FORM_COOKIE,
            new_token,
            httponly=True,
            samesite="lax",
            secure=request.app.state.settings.cookie_secure,
            path="/",
        )
    return response


# -- forms ------------------------------------------------------------------------------------


async def form_data(request: Request) -> FormData:
    """The posted form. Its `csrf_token` field is handed to `require`, which runs after this."""
    try:
        form = await request.form(max_files=0, max_fields=300, max_part_size=64 * 1024)
    except Exception as exc:  # malformed multipart bodies and the like
        raise BadRequest("the form could not be read; reload the page and try again") from exc
    csrf = form.get("csrf_token")
    if isinstance(csrf, str) and csrf:
        request.state.form_csrf = csrf
    return form


def text(form: FormData, name: str, *, limit: int = 5000) -> str:
    """A text field of a form, stripped; missing fields and uploads are ''."""
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def validation_errors(exc: ValidationError) -> dict[str, str]:
    """Field -> message of a pydantic error, worded for people."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
        field = loc[0] if loc else "__all__"
        message = str(err.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if err.get("type") == "missing":
            message = "This field is required"
        elif err.get("type") == "string_pattern_mismatch" and field in ("username", "handle"):
            message = (
                "Use letters, digits, dots, dashes or underscores, starting with a letter or digit"
            )
        elif err.get("type") == "string_pattern_mismatch" and field == "discord_id":
            message = "A Discord id is the 5 to 32 digit number Discord shows in developer mode"
        errors.setdefault(field, sentence(message))
    return errors


def error_fields(exc: AppError, known: set[str] | None = None) -> dict[str, str]:
    """Field -> message of a domain error (`details.field`), or a form-wide message."""
    field = exc.details.get("field")
    if isinstance(field, str) and (known is None or field in known):
        return {field: sentence(exc.message)}
    return {"__all__": sentence(exc.message)}


def query_string(params: dict[str, Any]) -> str:
    """`?a=1&b=2` of the non-empty parameters, or ''."""
    clean = {k: v for k, v in params.items() if v not in (None, "", False)}
    return "?" + urlencode(clean) if clean else ""


def day_start(day: date, tz: str) -> datetime:
    """Midnight of a day in the lab's time zone, as an aware datetime."""
    return datetime(day.year, day.month, day.day, tzinfo=_zone(tz))


def day_end(day: date, tz: str) -> datetime:
    """Midnight after a day in the lab's time zone (an exclusive end)."""
    return day_start(day, tz) + timedelta(days=1)


templates.env.filters["querystring"] = query_string
