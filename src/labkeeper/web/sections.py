"""The main sections of the lab shown in the navigation.

A section whose page exists (a page route at `/KEY`) links to it. One whose page is still to come
but whose API exists opens the interactive API docs at the section's tag, and is marked as such.
Which ones exist is read from the application's routes when the UI is installed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Section:
    """A part of the lab the API offers and the UI links to."""

    key: str
    label: str
    href: str
    permission: str | None
    api: bool = False  # no page yet: the entry opens the API docs


# key, label, API path prefixes (any one will do), permission needed to see the entry
PLANNED: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("devices", "Devices", ("/api/v1/devices",), "devices:read"),
    ("bookings", "Bookings", ("/api/v1/bookings",), None),
    ("timeline", "Timeline", ("/api/v1/timeline", "/api/v1/availability"), "devices:read"),
    ("topologies", "Topologies", ("/api/v1/topologies",), "topologies:write"),
    (
        "configurations",
        "Configurations",
        ("/api/v1/backups", "/api/v1/configs", "/api/v1/configurations"),
        "backups:read",
    ),
    ("jobs", "Jobs", ("/api/v1/jobs",), "jobs:read"),
)


def find_sections(
    routes: Iterable[tuple[str, list[str]]], pages: Iterable[str] = ()
) -> list[Section]:
    """The sections with a page or an API, given (path, tags) of every API route and page paths."""
    found: list[Section] = []
    routes = list(routes)
    page_paths = set(pages)
    for key, label, prefixes, permission in PLANNED:
        if f"/{key}" in page_paths:
            found.append(Section(key, label, f"/{key}", permission))
            continue
        tag = None
        for path, tags in routes:
            if any(path == p or path.startswith(p + "/") for p in prefixes):
                tag = tags[0] if tags else ""
                break
        if tag is None:
            continue
        href = "/api/docs" + (f"#/{quote(tag)}" if tag else "")
        found.append(Section(key, label, href, permission, api=True))
    return found
