"""The pages in headless Chromium against a live server, as people use them.

These also save the README's screenshots into docs/screenshots/ (1280x800, overwritten each run).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from labkeeper.core.audit import SYSTEM
from labkeeper.web.render import vendor_available
from tests.web.conftest import browser_sign_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


def _demo_devices(db) -> None:
    """A few devices, so the dashboard shows what a lab looks like."""
    from labkeeper.inventory import service as inventory
    from labkeeper.inventory.schemas import DeviceCreate, DeviceTypeCreate

    with db.scope() as s:
        for name, category in (("roadm", "optical"), ("server", "compute")):
            inventory.create_device_type(
                s, data=DeviceTypeCreate(name=name, category=category), actor=SYSTEM
            )
        for name, kind in (
            ("roadm-dublin-1", "roadm"),
            ("roadm-dublin-2", "roadm"),
            ("roadm-cork-1", "roadm"),
            ("compute-01", "server"),
            ("compute-02", "server"),
        ):
            inventory.create_device(s, data=DeviceCreate(name=name, device_type=kind), actor=SYSTEM)


def test_sign_in_dashboard_and_sign_out(page, make_user, db):
    make_user("admin", username="ada", password="analytical-engine-1")
    _demo_devices(db)
    page.goto("/admin/users")
    expect(page).to_have_url(re.compile(r"/login\?next=/admin/users$"))
    expect(page.get_by_role("heading", name="Sign in to labkeeper")).to_be_visible()
    screenshot(page, "sign-in")

    page.get_by_label("Username or email").fill("ada")
    page.get_by_label("Password").fill("wrong-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    expect(page.get_by_label("Username or email")).to_have_value("ada")

    page.get_by_label("Password").fill("analytical-engine-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin/users$"))  # where they were going

    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Welcome back, ada")).to_be_visible()
    devices = page.get_by_role("region", name="Devices free now")
    expect(devices).to_contain_text("roadm-dublin-1")
    expect(devices).to_contain_text("of 5 devices")
    expect(page.get_by_role("region", name="Your next bookings")).to_contain_text(
        "You have nothing booked"
    )
    screenshot(page, "dashboard")

    # Keyboard: the account menu opens from the keyboard and signs out.
    page.get_by_label("Account menu for ada").focus()
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("status")).to_contain_text("You have signed out")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_a_form_posted_without_the_csrf_token_is_refused(page, make_user, db):
    make_user("member", username="bea", password="honey-comb-42")
    browser_sign_in(page, "bea", "honey-comb-42")
    page.goto("/profile")
    page.get_by_label("Full name").fill("Beatrice")
    # What a forged form from another site looks like: no token.
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    page.goto("/profile")
    expect(page.get_by_label("Full name")).to_have_value("")
    page.get_by_label("Full name").fill("Beatrice")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("status")).to_contain_text("Your profile is saved")
    expect(page.get_by_label("Full name")).to_have_value("Beatrice")


def test_admin_adds_a_user_and_invites_someone_who_joins(page, browser, live_server, make_user):
    make_user("admin", username="ada", password="analytical-engine-1")
    make_user("approver", username="grace", password="cobol-compiler-1")
    browser_sign_in(page, "ada", "analytical-engine-1")
    page.goto("/admin/users")
    page.get_by_text("Add a user").first.click()
    form = page.get_by_role("region", name="Add a user")
    form.get_by_label("Username").fill("alan")
    form.get_by_label("Email").fill("alan@lab.example")
    form.get_by_label("Role").select_option("member")
    form.get_by_label("First password").fill("short")
    form.get_by_role("button", name="Create user").click()
    expect(page.locator("#new-password-error")).to_contain_text("at least 10 characters")
    page.get_by_role("region", name="Add a user").get_by_label("First password").fill(
        "enigma-machine-39"
    )
    page.get_by_role("region", name="Add a user").get_by_role("button", name="Create user").click()
    expect(page.get_by_role("status")).to_contain_text("alan can now sign in as member")
    expect(page.get_by_role("table")).to_contain_text("alan@lab.example")
    page.goto("/admin/users")
    screenshot(page, "users")
    if vendor_available("htmx.min.js"):  # installed by `make assets`: the list filters as you type
        page.get_by_label("Search").fill("gra")
        expect(page).to_have_url(re.compile(r"q=gra"))
        expect(page.get_by_role("table")).not_to_contain_text("alan")
        expect(page.get_by_role("table")).to_contain_text("grace")

    page.get_by_role("link", name="Invitations").click()
    page.get_by_label("Email").fill("katherine@lab.example")
    page.get_by_label("Suggested username").fill("katherine")
    page.get_by_role("button", name="Create invitation").click()
    link = page.get_by_label("Invitation link").input_value()
    assert link.startswith(live_server.url + "/invite/")
    expect(page.get_by_role("table")).to_contain_text("katherine@lab.example")

    guest = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    try:
        phone = guest.new_page()  # the invitee, on a phone
        phone.goto(link)
        expect(phone.get_by_role("heading", name="Join labkeeper")).to_be_visible()
        expect(phone.get_by_label("Username")).to_have_value("katherine")
        phone.get_by_label("Password", exact=True).fill("orbital-mechanics-62")
        phone.get_by_label("Repeat the password").fill("orbital-mechanics-62")
        phone.get_by_role("button", name="Create my account").click()
        expect(phone.get_by_role("status")).to_contain_text("Your account is ready")
        expect(phone.get_by_label("Username or email")).to_have_value("katherine")
        phone.get_by_label("Password").fill("orbital-mechanics-62")
        phone.get_by_role("button", name="Sign in").click()
        expect(phone.get_by_role("heading", name="Welcome back, katherine")).to_be_visible()
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "the dashboard must not scroll sideways on a phone"
        phone.goto(link)
        expect(phone.get_by_role("alert")).to_contain_text("has been used already")
    finally:
        guest.close()


def test_settings_show_a_validation_error_next_to_the_field(page, make_user):
    make_user("admin", username="ada", password="analytical-engine-1")
    browser_sign_in(page, "ada", "analytical-engine-1")
    page.goto("/admin/settings")
    general = page.get_by_role("region", name="General")
    general.get_by_label("Lab name", exact=True).fill("Photonics Lab")
    general.get_by_label("Lab timezone", exact=True).fill("Mars/Olympus")
    general.get_by_role("button", name="Save general").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    timezone = page.get_by_label("Lab timezone", exact=True)
    expect(timezone).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#setting-general-lab_timezone-error")).to_contain_text(
        "Unknown time zone 'Mars/Olympus'"
    )
    expect(page.get_by_label("Lab name", exact=True)).to_have_value(
        "Photonics Lab"
    )  # kept, not saved
    expect(page.locator(".brand")).to_have_text("labkeeper")
    screenshot(page, "settings")

    timezone.fill("Europe/Dublin")
    page.get_by_role("region", name="General").get_by_role("button", name="Save general").click()
    expect(page.get_by_role("status")).to_contain_text("Saved 2 settings")
    expect(page.locator(".brand")).to_have_text("Photonics Lab")
    expect(page.get_by_label("Lab timezone", exact=True)).to_have_value("Europe/Dublin")
    # A checkbox, saved with the keyboard; then a select.
    page.get_by_role("checkbox", name="Load demo on first run").uncheck()
    page.get_by_role("region", name="General").get_by_role("button", name="Save general").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Saved 1 setting")
    expect(page.get_by_role("checkbox", name="Load demo on first run")).not_to_be_checked()
    approval = page.get_by_role("region", name="Approval")
    approval.get_by_label("Mode", exact=True).select_option("always")
    approval.get_by_role("button", name="Save approval").click()
    expect(page.get_by_role("status")).to_contain_text("Saved 1 setting")
    expect(page.get_by_label("Mode", exact=True)).to_have_value("always")


def test_audit_page_shows_actions_and_filters_them(page, make_user):
    make_user("admin", username="ada", password="analytical-engine-1")
    browser_sign_in(page, "ada", "analytical-engine-1")
    page.goto("/admin/settings")
    page.get_by_role("region", name="General").get_by_label("Lab timezone", exact=True).fill(
        "Nowhere/City"
    )
    page.get_by_role("region", name="General").get_by_role("button", name="Save general").click()
    page.get_by_role("region", name="Security").get_by_label("Lockout minutes").fill("30")
    page.get_by_role("region", name="Security").get_by_role("button", name="Save security").click()
    expect(page.get_by_role("status")).to_contain_text("Saved 1 setting")

    page.goto("/admin/audit")
    table = page.get_by_role("table")
    expect(table).to_contain_text("settings.update")
    expect(table).to_contain_text("auth.login")
    expect(table).to_contain_text("web.settings_save")  # the refused change
    screenshot(page, "audit")

    page.get_by_label("Outcome").select_option("failure")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"outcome=failure"))
    expect(page.get_by_role("table")).to_contain_text("web.settings_save")
    expect(page.get_by_role("table")).not_to_contain_text("auth.login")

    page.goto("/admin/audit")
    page.get_by_label("Action").fill("settings.")
    page.get_by_label("Person").fill("ada")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=settings\."))
    rows = page.get_by_role("table").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("security.lockout_minutes")
    export = page.get_by_role("link", name="Export CSV")
    assert "action=settings." in export.get_attribute("href")
    with page.expect_download() as download:
        export.click()
    content = Path(download.value.path()).read_text(encoding="utf-8")
    assert content.count("settings.update") == 1 and "auth.login" not in content


def test_profile_shows_a_new_token_once(page, make_user, live_server):
    make_user("member", username="bea", password="honey-comb-42")
    browser_sign_in(page, "bea", "honey-comb-42")
    page.goto("/profile")
    page.get_by_label("Token name").fill("nightly script")
    page.get_by_label("Expires after").select_option("30")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_label("New API token").input_value()
    assert token.startswith("lkt_")
    me = page.request.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["username"] == "bea"
    expect(page.get_by_role("table")).to_contain_text("nightly script")
    page.goto("/profile")
    expect(page.get_by_label("New API token")).to_have_count(0)
    assert token not in page.content()
    expect(page.get_by_role("table")).to_contain_text(token[:10])
    screenshot(page, "profile")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke nightly script").click()
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    gone = page.request.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status == 401
