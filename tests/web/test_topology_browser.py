"""The topology editor in headless Chromium: a member draws a two-link topology (on the canvas and
with the keyboard forms), sees it checked as they draw, saves it, books it from now, and once the
booking is active and provisioning has run against the Polatis simulator, sees both links patched.

Saves docs/screenshots/topology-editor.png and topology-active.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from labkeeper.booking import service as bookings
from labkeeper.inventory.models import Device
from labkeeper.simulators.polatis import PolatisSimulator
from labkeeper.topology import provision
from labkeeper.web.render import vendor_available
from tests.topology.conftest import in_port, make_lab, out_port
from tests.web.conftest import SCREENSHOTS, browser_sign_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


def _click_node(page, node_id: str) -> None:
    """Click a device on the canvas where Cytoscape drew it."""
    box = page.locator("#topology-canvas").bounding_box()
    spot = page.evaluate(
        "(id) => window.labkeeperTopology.cy.getElementById(id).renderedPosition()", node_id
    )
    page.mouse.click(box["x"] + spot["x"], box["y"] + spot["y"])


def test_member_draws_saves_books_and_sees_both_links_patched(page, db, make_user):
    assert vendor_available("cytoscape.min.js") and vendor_available("htmx.min.js"), (
        "`make assets` installs the front-end libraries"
    )
    lab = make_lab(db)
    make_user("member", username="mia", password="optical-fibre-1")
    sim = PolatisSimulator(ports=64)
    with sim.run_in_thread():
        with db.scope() as s:
            s.get(Device, lab.switch_id).ssh_port = sim.port  # type: ignore[union-attr]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        browser_sign_in(page, "mia", "optical-fibre-1")

        page.get_by_role("link", name="Topologies").first.click()
        expect(page.get_by_text("You have no topologies yet")).to_be_visible()
        page.get_by_role("link", name="Draw a topology").click()
        expect(page).to_have_url(re.compile(r"/topologies/new$"))
        status = page.locator("#validation")
        expect(status).to_contain_text("Nothing drawn yet")

        # Place three devices with the form beside the canvas.
        for name in ("d1", "d2", "d3"):
            page.get_by_label("Device", exact=True).select_option(str(lab[name]))
            page.get_by_role("button", name="Add device").click()
            expect(page.locator("#nodes-body")).to_contain_text(name)
        # The first link on the canvas: click d1, then d2.
        _click_node(page, f"n{lab['d1']}")
        expect(page.locator("#canvas-status")).to_contain_text("Linking from d1")
        _click_node(page, f"n{lab['d2']}")
        expect(page.locator("#links-body")).to_contain_text(f"sw1: {out_port(1)} → {in_port(2)}")
        # A link that reuses d1's output is flagged at once, and removed again.
        page.get_by_label("From device A (output port)").select_option(
            label="d1 · output port 2 (in use)"
        )
        page.get_by_label("To device B (input port)").select_option(label="d3 · input port 5")
        page.get_by_role("button", name="Add link").click()
        expect(status).to_contain_text("1 problem")
        expect(status).to_contain_text(f"port {out_port(1)} of switch 'sw1' is used by edge 'e1'")
        page.get_by_role("button", name="Remove link e2").click()
        # The second link with the keyboard form: d2's output to d3's input.
        page.get_by_label("From device A (output port)").select_option(label="d2 · output port 4")
        page.get_by_label("To device B (input port)").select_option(label="d3 · input port 5")
        page.get_by_role("button", name="Add link").click()
        expect(status).to_contain_text("No problems: 2 links map to 2 switch patches")
        expect(page.locator("#links-body")).to_contain_text(f"sw1: {out_port(2)} → {in_port(3)}")
        page.get_by_label("Name").fill("two-hop")
        page.get_by_label("Description").fill("d1 → d2 → d3 through sw1")
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "topology-editor")

        page.get_by_role("button", name="Save", exact=True).click()
        expect(page).to_have_url(re.compile(r"/topologies/\d+$"))
        expect(page.get_by_role("status").first).to_contain_text("Topology two-hop is saved.")
        links = page.locator("#links-table")
        expect(links).to_contain_text(f"sw1: {out_port(1)} → {in_port(2)}")
        expect(links).to_contain_text(f"sw1: {out_port(2)} → {in_port(3)}")

        # Book it for a window starting now.
        page.get_by_label("Start now").check()
        page.get_by_role("button", name="Book", exact=True).click()
        expect(page.get_by_text(re.compile(r"Booked as group \S+ \(confirmed\)"))).to_be_visible()
        gid = page.locator(".item-list a.mono").first.inner_text()

        # The booking lifecycle starts it; the page then waits for the switch.
        with db.scope() as s:
            bookings.start_due(s)
        page.reload()
        expect(page.get_by_text("A booking of this topology is active")).to_be_visible()
        expect(links.locator(".patch-state")).to_have_count(2)
        expect(links.locator(".patch-state").first).to_contain_text("waiting to patch")

        # Provisioning patches the switch; the links table refreshes itself.
        result = provision.provision(db)
        assert result["added"] == 2 and result["failed"] == 0, result
        assert sim.cross_connects == {out_port(1): in_port(2), out_port(2): in_port(3)}
        states = links.locator(".patch-state")
        expect(states.nth(0)).to_contain_text("patched", timeout=10_000)
        expect(states.nth(1)).to_contain_text("patched", timeout=10_000)
        expect(states.nth(0)).to_contain_text("wanted present, switch has present")
        assert gid
        # The canvas shows the patched links too (drawn in green).
        patched = page.evaluate(
            "() => window.labkeeperTopology.cy.edges('.patched').map(e => e.id())"
        )
        assert sorted(patched) == ["e1", "e2"]
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / "topology-active.png"), full_page=True)

        # Readable on a phone: nothing wider than the screen but the tables' own scrolling.
        page.set_viewport_size({"width": 375, "height": 800})
        page.reload()
        expect(links).to_contain_text("patched")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert errors == []
