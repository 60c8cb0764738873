"""Every main page on a phone (375 px) and on a desktop, in headless Chromium, with a lab in it.

For each page: the page itself never scrolls sideways on a phone (wide tables and the timeline
grid scroll inside their own box), no JavaScript error reaches the console, and every visible
field has a name a screen reader can say (a label, aria-label or aria-labelledby).
Saves docs/screenshots/phone-dashboard.png, phone-timeline.png and phone-devices.png.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from labkeeper.auth.deps import Principal
from labkeeper.auth.permissions import ROLE_PERMISSIONS
from labkeeper.backups import service as backups
from labkeeper.backups.schemas import ScheduledJobCreate
from labkeeper.booking import service as bookings
from labkeeper.booking.schemas import BookingCreate, BookingItem
from labkeeper.core.audit import SYSTEM
from labkeeper.core.time import utcnow
from labkeeper.inventory import service as inventory
from labkeeper.inventory.models import MaintenanceWindow
from labkeeper.inventory.schemas import DeviceCreate, DeviceTypeCreate, SiteCreate, TagCreate
from labkeeper.topology import service as topologies
from labkeeper.topology.schemas import TopologyCreate
from tests.backups.conftest import add_credential, add_devices, backup_now
from tests.topology.conftest import chain, make_lab
from tests.web.conftest import browser_sign_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

PASSWORD = "analytical-engine-1"
PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 800}

# Visible fields (not hidden/submit/button/reset/image) without an accessible name.
UNLABELLED_JS = """
() => {
  const skip = new Set(['hidden', 'submit', 'button', 'reset', 'image']);
  const shown = (el) => {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return (box.width > 0 || box.height > 0) && style.visibility !== 'hidden'
      && style.display !== 'none';
  };
  const named = (el) => {
    if (el.labels && Array.from(el.labels).some((l) => l.textContent.trim())) return true;
    if ((el.getAttribute('aria-label') || '').trim()) return true;
    const by = (el.getAttribute('aria-labelledby') || '').trim();
    if (by && by.split(/\\s+/).some((id) => {
      const ref = document.getElementById(id);
      return ref && ref.textContent.trim();
    })) return true;
    return false;
  };
  const describe = (el) => {
    let text = el.tagName.toLowerCase();
    if (el.type && el.tagName === 'INPUT') text += `[type=${el.type}]`;
    if (el.name) text += `[name=${el.name}]`;
    if (el.id) text += `#${el.id}`;
    if (el.placeholder) text += ` placeholder="${el.placeholder}"`;
    return text;
  };
  return Array.from(document.querySelectorAll('input, select, textarea'))
    .filter((el) => !skip.has((el.getAttribute('type') || '').toLowerCase()))
    .filter(shown)
    .filter((el) => !named(el))
    .map(describe);
}
"""

# The page's own horizontal overflow, and what sticks out past the viewport (for the message).
OVERFLOW_JS = """
() => {
  const width = window.innerWidth;
  const scroll = document.documentElement.scrollWidth;
  if (scroll <= width + 1) return null;
  const scrolls = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden' || o === 'clip') return true;
    }
    return false;
  };
  const culprits = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1 && !scrolls(el)) {
      const parentBox = el.parentElement ? el.parentElement.getBoundingClientRect() : null;
      if (parentBox && parentBox.right > width + 1) continue;  // report the outermost only
      let text = el.tagName.toLowerCase();
      if (el.id) text += '#' + el.id;
      if (el.className && typeof el.className === 'string') {
        text += '.' + el.className.trim().split(/\\s+/).join('.');
      }
      culprits.push(`${text} (right edge ${Math.round(box.right)}px)`);
      if (culprits.length >= 5) break;
    }
  }
  return {scroll, width, culprits};
}
"""


# Navigation links (main menu, tab bars) a phone would hide off the edge of a scrolling bar.
HIDDEN_NAV_JS = """
() => Array.from(document.querySelectorAll('nav a'))
  .filter((a) => {
    const box = a.getBoundingClientRect();
    return box.width > 0 && (box.right > window.innerWidth + 1 || box.left < -1);
  })
  .map((a) => `${a.closest('nav').getAttribute('aria-label') || 'nav'}: ${a.textContent.trim()}`)
"""


def _lab(db, admin) -> dict[str, Any]:
    """Devices with types, sites and tags behind one optical switch, a booking of the admin
    today, a maintenance window, a topology, a credential, a backup run and a scheduled job."""
    lab = make_lab(db, count=4)
    now = utcnow().replace(second=0, microsecond=0)
    actor = Principal(
        user_id=admin.id,
        username=admin.username,
        role=admin.role,
        permissions=ROLE_PERMISSIONS[admin.role],
    )
    with db.scope() as s:
        for name, category in (("roadm", "optical"), ("router", "infra")):
            inventory.create_device_type(
                s, data=DeviceTypeCreate(name=name, category=category), actor=SYSTEM
            )
        for site in ("dublin", "cork"):
            inventory.create_site(s, data=SiteCreate(name=site), actor=SYSTEM)
        for tag in ("core", "edge"):
            inventory.create_tag(s, data=TagCreate(name=tag), actor=SYSTEM)
        ids = dict(lab.ids)
        for name, kind, site, tags in (
            ("roadm-dublin-1", "roadm", "dublin", ["core"]),
            ("roadm-cork-1", "roadm", "cork", ["edge"]),
            ("router-cork-1", "router", "cork", ["edge", "core"]),
        ):
            row = inventory.create_device(
                s,
                data=DeviceCreate(
                    name=name,
                    device_type=kind,
                    site=site,
                    tags=tags,
                    platform="generic",
                ),
                actor=SYSTEM,
            )
            ids[name] = row.id
        s.add(
            MaintenanceWindow(
                device_id=ids["roadm-cork-1"],
                start_time=now - timedelta(hours=1),
                end_time=now + timedelta(hours=5),
                reason="amplifier swap",
            )
        )
    with db.scope() as s:
        begin = now.replace(minute=0) + timedelta(hours=1)
        created = bookings.create(
            s,
            data=BookingCreate(
                items=[
                    BookingItem(device_id=ids[d], start=begin, end=begin + timedelta(hours=3))
                    for d in ("d1", "d2", "roadm-dublin-1")
                ],
                comment="BER sweep over the ring",
            ),
            actor=actor,
        )
        gid = created["grouped_booking_id"]
    drawing = chain(lab, ["d1", "d2", "d3"])
    for i, node in enumerate(drawing["nodes"]):  # side by side, as someone would draw them
        node.update(x=60.0 + 160.0 * i, y=80.0)
    with db.scope() as s:
        topology = topologies.create_topology(
            s,
            data=TopologyCreate(name="ring", description="three servers in a row", **drawing),
            actor=actor,
        )
        topology_id = topology.id
    add_credential(db, "lab-routers", tags={"lab": 100, "core": 50})
    job_devices = add_devices(db, None, names=["nowhere-1", "nowhere-2"], ports=[None, None])
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one,
    # and the backup task runs its collection with asyncio.run().
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(backup_now(db, device_ids=job_devices)))
    worker.start()
    worker.join()
    run = done[0]
    with db.scope() as s:
        backups.create_scheduled_job(
            s,
            data=ScheduledJobCreate(
                name="nightly backup",
                target_type="tags",
                tags=["lab"],
                schedule_type="daily",
                time_of_day="03:00",
            ),
            actor=SYSTEM,
        )
    return {
        "device": ids["roadm-dublin-1"],
        "group": gid,
        "topology": topology_id,
        "run": run.id,
    }


def _pages(lab: dict[str, Any]) -> list[str]:
    return [
        "/",
        "/devices",
        f"/devices/{lab['device']}",
        "/timeline?view=day",
        "/timeline?view=week",
        "/timeline?view=2weeks",
        "/bookings",
        f"/bookings/{lab['group']}",
        "/topologies",
        "/topologies/new",
        f"/topologies/{lab['topology']}",
        "/configurations",
        "/credentials",
        "/tags",
        "/jobs",
        f"/jobs/{lab['run']}",
        "/jobs/scheduled",
        "/profile",
        "/admin/approvals",
        "/admin/conflicts",
        "/admin/devices",
        "/admin/maintenance",
        "/admin/users",
        "/admin/invitations",
        "/admin/audit",
        "/admin/settings",
    ]


def _check(page: Any, url: str, size: dict[str, int], errors: list[str]) -> list[str]:
    """What is wrong with one page at one size."""
    where = f"{url} at {size['width']}px"
    errors.clear()
    page.set_viewport_size(size)
    response = page.goto(url)
    page.wait_for_load_state("networkidle")
    problems = []
    if response is None or response.status != 200:
        problems.append(f"{where}: HTTP {response.status if response else 'none'}")
    problems += [f"{where}: console error: {e}" for e in errors]
    if size["width"] < 600:
        overflow = page.evaluate(OVERFLOW_JS)
        if overflow:
            problems.append(
                f"{where}: the page scrolls sideways ({overflow['scroll']}px wide in a "
                f"{overflow['width']}px window); sticking out: {', '.join(overflow['culprits'])}"
            )
        problems += [f"{where}: link off the screen: {a}" for a in page.evaluate(HIDDEN_NAV_JS)]
    # Fields folded away in <details> (typed slots, edit forms) count as well.
    page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    problems += [f"{where}: field without a label: {f}" for f in page.evaluate(UNLABELLED_JS)]
    return problems


def test_every_main_page_fits_a_phone_and_labels_its_fields(page, make_user, db):
    admin = make_user("superadmin", username="ada", password=PASSWORD)
    lab = _lab(db, admin)
    assert lab["group"], "the admin's booking was not created"
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    browser_sign_in(page, "ada", PASSWORD)

    problems: list[str] = []
    for url in _pages(lab):
        for size in (PHONE, DESKTOP):
            problems += _check(page, url, size, errors)
    assert not problems, "\n".join(problems)


def test_the_sweep_sees_a_wide_box_an_unlabelled_field_and_a_script_error(page, make_user):
    """The checks above are not vacuous: each kind of fault is reported, naming the element."""
    make_user("superadmin", username="ada", password=PASSWORD)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    browser_sign_in(page, "ada", PASSWORD)
    page.route(
        "**/profile",
        lambda route: route.fulfill(
            status=200,
            content_type="text/html",
            body=(
                "<!doctype html><main><div class='wide' style='width:900px'>x</div>"
                "<label for='ok'>Fine</label><input id='ok'>"
                "<label>Wrapped <select name='fine'></select></label>"
                "<input aria-label='Also fine'>"
                "<input type='hidden' name='skipped'>"
                "<input name='nameless' placeholder='Search'>"
                "<script>console.error('boom')</script></main>"
            ),
        ),
    )
    problems = _check(page, "/profile", PHONE, errors)
    assert any("scrolls sideways" in p and "div.wide" in p for p in problems), problems
    assert any("console error: boom" in p for p in problems), problems
    unlabelled = [p for p in problems if "without a label" in p]
    assert unlabelled == [
        "/profile at 375px: field without a label: "
        'input[type=text][name=nameless] placeholder="Search"'
    ], problems


def test_phone_screenshots(page, make_user, db):
    admin = make_user("superadmin", username="ada", password=PASSWORD)
    _lab(db, admin)
    page.set_viewport_size(PHONE)
    browser_sign_in(page, "ada", PASSWORD)
    for url, name in (
        ("/", "phone-dashboard"),
        ("/timeline?view=day", "phone-timeline"),
        ("/devices", "phone-devices"),
    ):
        page.goto(url)
        page.wait_for_load_state("networkidle")
        screenshot(page, name)
