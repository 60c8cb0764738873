"""Helpers of the web tests: signing in with the test client, a live server and headless Chromium.

Browser tests run on SQLite only (the pages are the same on every backend; the TestClient tests
cover the others) and share one Chromium per worker (`xdist_group("browser")`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from labkeeper.auth.deps import COOKIE_NAME
from labkeeper.web.render import FORM_COOKIE

HTML = {"accept": "text/html,application/xhtml+xml"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def csrf_of(html: str) -> str:
    """The CSRF token a page put in its forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: Any, username: str, password: str, *, next_url: str = "") -> str:
    """Sign in through the sign-in page; returns the session's CSRF token."""
    client.get("/login", headers=HTML)
    r = client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": client.cookies.get(FORM_COOKIE),
            "next": next_url,
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:500]
    assert client.cookies.get(COOKIE_NAME)
    return csrf_of(client.get("/profile", headers=HTML).text)


@contextlib.contextmanager
def counting(db: Any) -> Iterator[list[int]]:
    """Count the SQL statements run while the block runs."""
    seen: list[int] = []

    def _count(*_args: Any) -> None:
        seen.append(1)

    event.listen(db.engine, "before_cursor_execute", _count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", _count)


# -- browser tests ---------------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    app: Any


@pytest.fixture
def live_server(request: pytest.FixtureRequest, database: Any) -> Iterator[LiveServer]:
    """The app served by uvicorn on 127.0.0.1 (a free port) in a thread, on the test database."""
    if database.backend != "sqlite":
        pytest.skip("browser tests run on SQLite only")
    import uvicorn

    from labkeeper.app import create_app
    from labkeeper.config import Settings

    request.getfixturevalue("db")  # empties the database
    url = database.engine.url.render_as_string(hide_password=False)
    # Several sign-ins per test: the per-address limit is for the real world, not for this.
    settings = Settings(
        database_url=url, env="test", run_scheduler=False, login_rate_per_minute=1000
    )
    app = create_app(settings, db=database, start_background=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian, shared by the browser tests of one module.

    Module scope, not session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, which would break every later test that calls asyncio.run().
    """
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        message = f"{CHROMIUM} is missing: `make chromium` installs it"
        if os.environ.get("LABKEEPER_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh browser tab (own cookies) at the live server, 1280x800."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def screenshot(page: Any, name: str) -> None:
    """Save the page for the README (docs/screenshots/NAME.png, overwritten each run)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def browser_sign_in(page: Any, username: str, password: str) -> None:
    """Sign in through the form and wait for the dashboard."""
    page.goto("/login")
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
