"""An operator backs up a simulated device from the browser, its configuration changes, a second
backup runs, and the diff shows the changed line (SSH to a simulated device on 127.0.0.1).

Also saves docs/screenshots/configurations.png, job-run.png and diff.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from labkeeper.jobs import registry
from labkeeper.jobs.engine import ThreadDispatcher, set_dispatcher
from tests.backups.conftest import add_credential, add_devices
from tests.backups.conftest import make_farm as make_farm  # the fixture
from tests.web.conftest import browser_sign_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

CHANGED = "snmp-server location rack-42-changed"


@pytest.fixture
def worker(database):
    """An in-process worker (as `labkeeper serve` runs) for the runs the pages queue."""
    registry.load_all()
    dispatcher = ThreadDispatcher(database, 1)
    previous = set_dispatcher(dispatcher)
    try:
        yield dispatcher
    finally:
        set_dispatcher(previous)
        dispatcher.close(10)


def _back_up(page) -> None:
    page.get_by_role("button", name="Back up now").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    # The page follows the run (htmx polling) until it has finished.
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=30_000)


def test_operator_backs_up_twice_and_sees_the_changed_line(page, make_user, db, make_farm, worker):
    farm = make_farm(3)
    add_devices(db, farm, names=["edge-router-1", "edge-router-2", "core-switch-1"])
    add_credential(db, "lab-admin")
    make_user("admin", username="olga", password="operator-pass-1")
    browser_sign_in(page, "olga", "operator-pass-1")

    page.get_by_role("link", name="Configurations").first.click()
    expect(page.get_by_role("heading", name="Configurations", exact=True)).to_be_visible()
    page.get_by_role("link", name="edge-router-1", exact=True).click()
    expect(page.get_by_text("No configuration stored yet")).to_be_visible()

    _back_up(page)
    expect(page.locator("#live")).to_contain_text("edge-router-1")
    screenshot(page, "job-run")

    farm.do(farm.sim.append_config_line, 0, CHANGED)
    page.get_by_role("link", name="the device's configurations").click()
    _back_up(page)
    expect(page.locator("#live")).to_contain_text("1\nchanged")

    page.get_by_role("link", name="the device's configurations").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    page.get_by_role("button", name="Compare selected").click()
    expect(page).to_have_url(re.compile(r"/configurations/devices/\d+/diff\?(a|b)=\d+&(a|b)=\d+$"))
    expect(page.get_by_role("heading", name="edge-router-1: version 1 → 2")).to_be_visible()
    added = page.locator("td.code.add")
    expect(added).to_have_count(1)
    expect(added).to_contain_text(CHANGED)
    expect(page.get_by_text("+1 added")).to_be_visible()
    screenshot(page, "diff")

    page.get_by_role("link", name="Unified view").click()
    expect(page.locator("pre.unified .add")).to_have_text("+" + CHANGED)

    page.goto("/configurations")
    expect(page.locator("#devices")).to_contain_text("edge-router-1")
    page.get_by_label("Search in configurations").fill("rack-42")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("mark").first).to_have_text("rack-42")
    page.goto("/configurations")
    screenshot(page, "configurations")
